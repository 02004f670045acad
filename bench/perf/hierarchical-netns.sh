#!/usr/bin/env bash
# Hierarchical against flat ring all-reduce over UCX (tcp) between hosts that are network
# namespaces on this machine, several ranks per host, each host's link shaped to 1 Gbit/s
# (issue 15's benchmark; results in docs/performance.md).
#
#   bench/perf/hierarchical-netns.sh [OPTIONS] [-- CHORUS_PERF_ARGS...]
#
#   -H, --hosts N          hosts; default 2
#   --ranks-per-host L     ranks on each host; default 2
#   --rounds R             rounds of (ring, hierarchical), interleaved; default 3
#   -o, --out DIR          keep chorus-perf's tables and JSON (ALGO-ROUND.txt / .json) and
#                          the summary (summary.md) in DIR; without it they are deleted
#   --perf PATH            the chorus-perf to run; default build/bench/perf/chorus-perf
#   --subnet A.B.C         the hosts' /24; default 10.216.0
#   --plain                leave the links unshaped
#   CHORUS_PERF_ARGS       what follows `chorus-perf all_reduce --transport ucx --algo ALGO
#                          --ranks-per-host L`; default -b 64M -e 64M -n 5 -w 1 -c 1
#
# Topology: tests/ucx/netns_lib.sh's (host i a namespace with interface ch0 on a bridge),
# ranks placed host by host (rank r on host r / L) with netns_start_layout_job; UCX_TLS=tcp,
# so ranks of one host talk over the host's loopback and only cross-host traffic meets the
# shaped link (netem rate 1gbit, or tbf where the kernel has no netem). Each round runs one
# chorus-perf job per algorithm and reads every host's ch0 transmit counter
# (/sys/class/net/ch0/statistics/tx_bytes, inside the namespace) before and after it: the
# bytes a host sent across its link per all-reduce are the difference over the job's calls
# (2 placements x (warm-up + iterations + check)); they include TCP/IP headers and the ACKs
# of what the host received. S is the vector's size. Flat ring sends 2(P-1)/P S from each
# rank, and with ranks numbered by host the ring crosses each host boundary once: (2(P-1)/P)
# S per host; hierarchical sends 2(H-1)/H S per host. The summary gives, per round, both
# times (chorus-perf's mean over iterations, slowest rank, out of place) and the ratio, then
# the medians.
#
# Needs root (ip netns), iproute2 and python3; exits 77 with a message when it cannot run.
# Every namespace and process it started are gone when it exits. Exits 0 when every run
# succeeded and every result checked right (whatever the ratio), 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ranks_per_host=2
rounds=3
args=()
while (($# > 0)); do
  case "$1" in
    --ranks-per-host) ranks_per_host="${2:?$1 needs a value}"; shift ;;
    --rounds) rounds="${2:?$1 needs a value}"; shift ;;
    --) args+=("$@"); break ;;
    *) args+=("$1") ;;
  esac
  shift
done
for v in "${ranks_per_host}" "${rounds}"; do
  if ! [[ "${v}" =~ ^[1-9][0-9]*$ ]]; then
    echo "hierarchical-netns.sh: --ranks-per-host and --rounds take a number >= 1, not '${v}'" >&2
    exit 2
  fi
done
# shellcheck source=tests/ucx/netns_lib.sh
source "${root}/tests/ucx/netns_lib.sh"
netns_bench_args "${BASH_SOURCE[0]}" "${root}/build/bench/perf/chorus-perf" 10.216.0 --plain \
  "${args[@]}"
hosts="${netns_arg_hosts}"
out="${netns_arg_out}"
perf="${netns_arg_perf}"
perf_args=("${netns_arg_rest[@]}")
shape=$((${#netns_arg_flags[@]} == 0))
if ((${#perf_args[@]} == 0)); then perf_args=(-b 64M -e 64M -n 5 -w 1 -c 1); fi
netns_require python3:python3

netns_setup "${hosts}" "${netns_arg_subnet}"
results="${out:-${netns_workdir}}"
if ((shape)); then netns_shape; fi
layout=""
for ((i = 0; i < hosts * ranks_per_host; ++i)); do
  layout+="${layout:+,}$((i / ranks_per_host))"
done

# tx_bytes: every host's ch0 transmit counter, space-separated.
tx_bytes() {
  local h line=""
  for ((h = 0; h < hosts; ++h)); do
    line+="$(ip netns exec "${netns_prefix}-h${h}" cat /sys/class/net/ch0/statistics/tx_bytes) "
  done
  echo "${line}"
}

: >"${results}/bytes.txt"
for ((round = 1; round <= rounds; ++round)); do
  for algo in ring hierarchical; do
    label="${algo}-${round}"
    cmd=("${perf}" all_reduce --transport ucx --algo "${algo}" --ranks-per-host "${ranks_per_host}"
      "${perf_args[@]}" --json "${results}/${label}.json")
    echo "hierarchical-netns ${label}: ${cmd[*]} (hosts ${layout})"
    before="$(tx_bytes)"
    netns_start_layout_job "${label}" "${layout}" "${cmd[@]}"
    netns_wait_job "${label}" 1200
    after="$(tx_bytes)"
    echo "${label} ${before}| ${after}" >>"${results}/bytes.txt"
    grep -v "UCX  WARN" "${netns_workdir}/${label}.0" >"${results}/${label}.txt" || true
    cat "${results}/${label}.txt"
    if ! netns_failed "hierarchical-netns ${label}" ||
      ! grep -Eq '^# #wrong over all sizes and ranks: 0 \(OK\)$|^# results not checked' \
        "${netns_workdir}/${label}.0"; then
      echo "hierarchical-netns ${label}: a rank failed or a result was wrong"
      netns_show_outputs "${label}"
      exit 1
    fi
  done
done

python3 - "${results}" "${rounds}" "${hosts}" "${ranks_per_host}" \
  "${netns_shaping:-none (plain links)}" <<'PY' | tee "${results}/summary.md"
import json, statistics, sys

results, rounds, hosts, per_host, shaping = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ranks = hosts * per_host
sent = {}
for line in open(f"{results}/bytes.txt"):
    label, rest = line.split(" ", 1)
    before, after = rest.split("|")
    sent[label] = [int(b) - int(a) for a, b in zip(before.split(), after.split())]

def row(label):
    data = json.load(open(f"{results}/{label}.json"))
    return [x for x in data["results"] if x["placement"] == "out-of-place"][-1]

print(f"All-reduce of one size, {hosts} hosts x {per_host} ranks, UCX tcp, links: {shaping}")
print()
print("| round | size | ring ms | hierarchical ms | ring / hierarchical | ring S/host | hierarchical S/host |")
print("|---|---|---|---|---|---|---|")
ratios, ring_s, hier_s = [], [], []
for k in range(1, rounds + 1):
    ring, hier = row(f"ring-{k}"), row(f"hierarchical-{k}")
    settings = json.load(open(f"{results}/ring-{k}.json"))["settings"]
    size = ring["size"]
    # chorus-perf calls each placement warm-up + iterations (+1 checking) times
    calls = 2 * (settings["iters"] + settings["warmup_iters"] + (1 if settings["check"] else 0))
    per = lambda label: max(sent[label]) / calls / size
    rs, hs = per(f"ring-{k}"), per(f"hierarchical-{k}")
    ratio = ring["time_us"] / hier["time_us"]
    ratios.append(ratio); ring_s.append(rs); hier_s.append(hs)
    print(f"| {k} | {size >> 20} MiB | {ring['time_us'] / 1e3:.1f} | {hier['time_us'] / 1e3:.1f} | "
          f"{ratio:.2f}x | {rs:.3f} | {hs:.3f} |")
print(f"| median | | | | {statistics.median(ratios):.2f}x | {statistics.median(ring_s):.3f} | "
      f"{statistics.median(hier_s):.3f} |")
print()
print(f"Expected bytes per host: ring 2(P-1)/P = {2 * (ranks - 1) / ranks:.2f} S, "
      f"hierarchical 2(H-1)/H = {2 * (hosts - 1) / hosts:.2f} S (plus TCP/IP headers and ACKs).")
PY
