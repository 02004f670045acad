#!/usr/bin/env python3
"""The cost model against measurement: runs chorus-perf for each algorithm and chorus-sim
for the same sizes under a calibrated profile, and prints, per size and algorithm, the
measured time, the predicted one and their ratio (docs/tuning.md, "How good is the model").

  bench/perf/model-check.py --bin build/bench/perf --transport shm --np 2 \\
      --profile profile.json [--collective all_reduce] [-b 64K] [-e 64M] [-f 4] \\
      [--algo ring,halving_doubling,direct,recursive_doubling,tree,one_sided] [--iters 10] \
      [--rounds 3]

Measured: chorus-perf's out-of-place time (the ranks' mean, -a 1), each algorithm run with
its default piece, the median of --rounds runs (30 warm-up calls per size: fewer leave the
first table of a run slow at small sizes, docs/tuning.md); predicted: chorus-sim --pieces
default. A second table sets `automatic` under the model tuner (chorus-perf --profile) and
under the default rule against the fastest named algorithm at each size. Exit status 0
whatever the errors: this measures the model, it does not judge it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the folder with chorus-perf and chorus-sim")
    ap.add_argument("--transport", default="shm")
    ap.add_argument("--np", type=int, required=True)
    ap.add_argument("--profile", required=True, help="chorus-perf --calibrate's file")
    ap.add_argument("--collective", default="all_reduce")
    ap.add_argument("-b", default="64K")
    ap.add_argument("-e", default="64M")
    ap.add_argument("-f", default="4")
    ap.add_argument("--algo", default="ring,halving_doubling,direct,recursive_doubling,tree")
    ap.add_argument("--iters", default="10")
    ap.add_argument("--rounds", type=int, default=3, help="chorus-perf runs; medians")
    ap.add_argument("--mapped-windows", action="store_true",
                    help="the transport maps windows (shm): one_sided may be listed")
    a = ap.parse_args()
    perf = os.path.join(a.bin, "chorus-perf")
    sim = os.path.join(a.bin, "chorus-sim")
    with tempfile.TemporaryDirectory() as tmp:
        predicted_json = os.path.join(tmp, "predicted.json")
        runs = {}
        for rnd in range(a.rounds):
            measured_json = os.path.join(tmp, f"measured{rnd}.json")
            base = [perf, a.collective, "--transport", a.transport, "--np", str(a.np), "-b",
                    a.b, "-e", a.e, "-f", a.f, "-n", a.iters, "-w", "30", "-c", "0"]
            subprocess.run(base + ["--algo", a.algo + ",automatic", "--profile", a.profile,
                                   "-J", measured_json], check=True, stdout=subprocess.DEVNULL)
            rule_json = os.path.join(tmp, f"rule{rnd}.json")
            subprocess.run(base + ["--algo", "automatic", "-J", rule_json], check=True,
                           stdout=subprocess.DEVNULL)
            with open(rule_json) as f:
                for r in json.load(f)["results"]:
                    if r.get("placement") == "out-of-place":
                        runs.setdefault(("default rule", int(r["size"])), []).append(
                            float(r["time_us"]))
            with open(measured_json) as f:
                for r in json.load(f)["results"]:
                    if r.get("placement") == "out-of-place":
                        runs.setdefault((r["algorithm"], int(r["size"])), []).append(
                            float(r["time_us"]))
        cmd = [sim, a.collective, "--ranks", str(a.np), "-b", a.b, "-e", a.e, "-f", a.f,
               "--profile", a.profile, "--algo", a.algo, "--pieces", "default", "--json",
               predicted_json]
        if a.mapped_windows:
            cmd.append("--mapped-windows")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(predicted_json) as f:
            predicted = json.load(f)
    times = {key: statistics.median(v) for key, v in runs.items()}
    ratios = []
    print(f"| size | algorithm | measured (us) | predicted (us) | predicted / measured |")
    print("|---:|---|---:|---:|---:|")
    for row in predicted["rows"]:
        size = int(row["bytes"])
        for p in sorted(row["predictions"], key=lambda p: a.algo.split(",").index(p["algorithm"])):
            got = times.get((p["algorithm"], size))
            if got is None or got <= 0:
                continue
            want = p["seconds"] * 1e6
            ratio = want / got
            ratios.append(ratio)
            print(f"| {size} | {p['algorithm']} | {got:.1f} | {want:.1f} | {ratio:.2f} |")
    print("\n| size | fastest named | its time (us) | model tuner (us) | / fastest "
          "| default rule (us) | / fastest |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    named = a.algo.split(",")
    for size in sorted({k[1] for k in times}):
        best = min((times[(n, size)], n) for n in named if (n, size) in times)
        model = times.get(("automatic", size))
        rule = times.get(("default rule", size))
        if model is None or rule is None:
            continue
        print(f"| {size} | {best[1]} | {best[0]:.1f} | {model:.1f} | {model / best[0]:.2f} "
              f"| {rule:.1f} | {rule / best[0]:.2f} |")
    if ratios:
        within = sum(1 for r in ratios if 0.75 <= r <= 1.25)
        print(f"\n{within} of {len(ratios)} predictions within 25 % of the measurement; "
              f"median ratio {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
