#!/usr/bin/env python3
"""Prints the markdown table of docs/performance.md from a `chorus-perf --compare mpi --json`
file: per size the out-of-place busbw of every chorus algorithm, of MPI and the floor, the
automatic choice's and MPI's times, and the ratios MPI time / chorus time.

    bench/perf/to_markdown.py all_reduce-np4.json
"""
import json
import sys


def size_label(b):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if b >= 1 << shift and b % (1 << shift) == 0:
            return f"{b >> shift}{unit}"
    return str(b)


def main(path):
    with open(path) as f:
        d = json.load(f)
    if "rows" not in d:
        sys.exit(f"{path}: not a --compare mpi file (no 'rows')")
    algos = d["chorus_runs"][0]["settings"]["algorithms"]  # in the order of -a
    floor = d.get("floor") or {}
    if floor.get("copy_gbs"):
        print(f"STREAM copy {floor['copy_gbs']:.1f} GB/s -> busbw floor "
              f"{floor['busbw_gbs']:.2f} GB/s.\n")
    head = ["size"] + [f"{a} busbw" for a in algos] + ["Open MPI busbw", "floor"]
    head += ["automatic time (us)", "Open MPI time (us)", "automatic / MPI", "best / MPI"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for row in d["rows"]:
        c = row["chorus"]
        cells = [size_label(row["size"])]
        cells += [f"{c[a]['busbw_gbs']:.2f}" for a in algos]
        cells += [f"{row['mpi']['busbw_gbs']:.2f}", f"{row.get('floor_busbw_gbs') or 0:.2f}"]
        auto = c.get("automatic", c[algos[-1]])
        cells += [f"{auto['time_us']:.1f}", f"{row['mpi']['time_us']:.1f}"]
        ratios = row["ratio_vs_mpi"]
        cells += [f"{ratios.get('automatic', 0):.2f}", f"{max(ratios.values()):.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
