#!/usr/bin/env bash
# All-reduce over UCX (tcp) between hosts that are network namespaces on this machine, set
# against the link rate that ucx_perftest measures on the same links (tracker issue 5: busbw
# >= 90 % of it from 16 MiB up).
#
#   bench/perf/netns-perf.sh [OPTIONS] [-- CHORUS_PERF_ARGS...]
#
#   -H, --hosts N      hosts, one rank each; default 2
#   -o, --out DIR      keep the results in DIR: per link (plain, shaped) chorus-perf's JSON
#                      and table (LINK.json, LINK.txt) and ucx_perftest's output
#                      (ucx_perftest-LINK.txt); without it they are deleted on exit
#   --perf PATH        the chorus-perf to run (built with UCX); default
#                      build/bench/perf/chorus-perf of this checkout
#   --subnet A.B.C     the hosts' /24 (host i is A.B.C.<i+1>); default 10.214.0, apart from
#                      tests/ucx/netns.sh's 10.213.0
#   --smoke            plain links only, no ucx_perftest: chorus-perf with small sizes and
#                      checking, failing unless every rank exits 0 and #wrong is 0 (the
#                      ctest perf.ucx.netns.2)
#   CHORUS_PERF_ARGS   what follows `chorus-perf all_reduce --transport ucx`; default
#                      -b 1M -e 64M -f 4 --algo ring,direct,automatic -n 5 -w 2
#                      (--smoke: -b 32 -e 1M -f 32 -n 2 -w 1 -c 1 and every algorithm)
#
# The topology is tests/ucx/netns_lib.sh's, shared with tests/ucx/netns.sh: host i is a
# namespace with interface ch0, joined to the others through a bridge. For the plain links,
# and then for the same links shaped to 1 Gbit/s (netem, or tbf where the kernel has no
# netem), the script
#   1. measures the link with ucx_perftest: tag_bw, 16 MiB messages, host 1 (client) to
#      host 0 (server), UCX_TLS=tcp UCX_NET_DEVICES=ch0;
#   2. runs chorus-perf all_reduce --transport ucx with one rank per host, started as
#      tests/ucx/netns.sh starts its ranks (RANK, WORLD_SIZE, CHORUS_STORE on host 0);
#   3. prints busbw / link bandwidth for every algorithm, placement and size >= 16 MiB,
#      and the lowest of them against the 90 % target.
# Units: ucx_perftest's MB/s are MiB/s (2^20 B/s), chorus-perf's GB/s are 10^9 B/s; the
# ratios are taken in the same unit. All-reduce busbw is what each rank's link carries in
# one direction, ucx_perftest tag_bw one direction of one link: the two compare directly.
#
# Needs root (ip netns), iproute2, and for the benchmark ucx_perftest (Debian: ucx-utils) and
# python3; exits 77 with a message ("SKIP: ...") when it cannot run. Every namespace and
# every process it started are gone when it exits, however it exits. Exits 0 when every
# run succeeded (whatever the ratios), 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/ucx/netns_lib.sh
source "${root}/tests/ucx/netns_lib.sh"
netns_bench_args "${BASH_SOURCE[0]}" "${root}/build/bench/perf/chorus-perf" 10.214.0 --smoke "$@"
hosts="${netns_arg_hosts}"
out="${netns_arg_out}"
perf="${netns_arg_perf}"
subnet="${netns_arg_subnet}"
perf_args=("${netns_arg_rest[@]}")
smoke=$((${#netns_arg_flags[@]} > 0))
if ((${#perf_args[@]} == 0)); then
  if ((smoke)); then
    perf_args=(-b 32 -e 1M -f 32 -n 2 -w 1 -c 1
      --algo "ring,tree,double_binary_tree,recursive_doubling,halving_doubling,direct,automatic")
  else
    perf_args=(-b 1M -e 64M -f 4 --algo "ring,direct,automatic" -n 5 -w 2)
  fi
fi
if ((!smoke)); then netns_require ucx_perftest:ucx-utils python3:python3; fi

netns_setup "${hosts}" "${subnet}"
results="${out:-${netns_workdir}}"
job_seconds=$((smoke ? 60 : 1800))  # a hang is a failure, not a wait

# all_reduce LINK: chorus-perf on every host; its table, and failure unless every rank
# exits 0 and the results were checked and right (or, outside --smoke, not checked).
all_reduce() {
  local link="$1" start=${SECONDS} failed=0
  local cmd=("${perf}" all_reduce --transport ucx "${perf_args[@]}" --json "${results}/${link}.json")
  echo "netns-perf ${link}: ${cmd[*]} (one rank on each of ${hosts} hosts)"
  netns_start_job "${link}" "${cmd[@]}"
  netns_wait_job "${link}" "${job_seconds}"
  grep -v "UCX  WARN" "${netns_workdir}/${link}.0" >"${results}/${link}.txt" || true
  cat "${results}/${link}.txt"
  netns_failed "netns-perf ${link}" || failed=1
  local checked='^# #wrong over all sizes and ranks: 0 \(OK\)$'
  if ((!smoke)); then checked="${checked}|^# results not checked \(-c 0\)$"; fi
  if ! grep -Eq "${checked}" "${netns_workdir}/${link}.0"; then
    echo "netns-perf ${link}: chorus-perf did not report #wrong 0"
    failed=1
  fi
  if ((failed)); then
    netns_show_outputs "${link}"
    exit 1
  fi
  echo "netns-perf ${link}: chorus-perf all_reduce --transport ucx ran on ${hosts} hosts" \
    "($((SECONDS - start)) s)"
}

# ratios LINK: busbw at the sizes >= 16 MiB over link_gbs.
ratios() {
  python3 - "$1" "${results}/$1.json" "${link_gbs}" <<'EOF'
import json
import sys

link, path, link_gbs = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(path) as f:
    rows = [r for r in json.load(f)["results"] if r["size"] >= 16 << 20]
print(f"netns-perf {link}: all_reduce busbw / ucx_perftest link bandwidth ({link_gbs:.3f} GB/s)")
print(f"# {'algorithm':<20} {'placement':<12} {'size (MiB)':>10} {'busbw (GB/s)':>13} {'ratio':>7}")
for r in rows:
    ratio = r["busbw_gbs"] / link_gbs
    print(f"  {r['algorithm']:<20} {r['placement']:<12} {r['size'] / (1 << 20):>10g} "
          f"{r['busbw_gbs']:>13.3f} {100 * ratio:>6.1f}%")
if rows:
    low = min(rows, key=lambda r: r["busbw_gbs"])
    ratio = low["busbw_gbs"] / link_gbs
    print(f"netns-perf {link}: lowest {100 * ratio:.1f} % ({low['algorithm']}, {low['placement']}, "
          f"{low['size'] / (1 << 20):g} MiB): {'meets' if ratio >= 0.9 else 'misses'} "
          "the 90 % target")
else:
    print(f"netns-perf {link}: no size >= 16 MiB in this sweep")
EOF
}

if ((smoke)); then
  all_reduce plain
  echo "netns-perf: chorus-perf --transport ucx correct across ${hosts} namespace hosts"
  exit 0
fi
for link in plain shaped; do
  if [[ "${link}" == shaped ]]; then netns_shape; fi
  netns_link_rate "${link}" "${results}/ucx_perftest-${link}.txt"
  link_gbs="${netns_link_gbs}"
  all_reduce "${link}"
  ratios "${link}"
done
if [[ -n "${out}" ]]; then echo "netns-perf: results in ${out}"; fi
