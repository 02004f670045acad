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
#   CHORUS_PERF_ARGS   what follows `chorus-perf all_reduce -t ucx`; default
#                      -b 1M -e 64M -f 4 -a ring,direct,automatic -n 5 -w 2
#                      (--smoke: -b 32 -e 1M -f 32 -n 2 -w 1 -c 1 and every algorithm)
#
# The topology is tests/ucx/netns_lib.sh's, shared with tests/ucx/netns.sh: host i is a
# namespace with interface ch0, joined to the others through a bridge. For the plain links,
# and then for the same links shaped to 1 Gbit/s (netem, or tbf where the kernel has no
# netem), the script
#   1. measures the link with ucx_perftest: tag_bw, 16 MiB messages, host 1 (client) to
#      host 0 (server), UCX_TLS=tcp UCX_NET_DEVICES=ch0;
#   2. runs chorus-perf all_reduce -t ucx with one rank per host, started as
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
hosts=2
out=""
perf="${root}/build/bench/perf/chorus-perf"
subnet=10.214.0
smoke=0
perf_args=()
while (($# > 0)); do
  case "$1" in
    -H | --hosts) hosts="${2:?$1 needs a value}"; shift ;;
    -o | --out) out="${2:?$1 needs a value}"; shift ;;
    --perf) perf="${2:?$1 needs a value}"; shift ;;
    --subnet) subnet="${2:?$1 needs a value}"; shift ;;
    --smoke) smoke=1 ;;
    --) shift; perf_args=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "netns-perf.sh: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done
if ((${#perf_args[@]} == 0)); then
  if ((smoke)); then
    perf_args=(-b 32 -e 1M -f 32 -n 2 -w 1 -c 1
      -a "ring,tree,double_binary_tree,recursive_doubling,halving_doubling,direct,automatic")
  else
    perf_args=(-b 1M -e 64M -f 4 -a "ring,direct,automatic" -n 5 -w 2)
  fi
fi
if ! [[ "${hosts}" =~ ^[0-9]+$ ]] || ((hosts < 2)); then
  echo "netns-perf.sh: --hosts needs a number >= 2, not '${hosts}'" >&2
  exit 2
fi
perf="$(realpath -m "${perf}")"
if [[ ! -x "${perf}" ]]; then
  echo "netns-perf.sh: no chorus-perf at ${perf} (build it, or name one with --perf)" >&2
  exit 1
fi
# shellcheck source=tests/ucx/netns_lib.sh
source "${root}/tests/ucx/netns_lib.sh"
if ((!smoke)); then
  for tool in ucx_perftest:ucx-utils python3:python3; do
    command -v "${tool%%:*}" >/dev/null ||
      netns_skip "${tool%%:*} is not installed (Debian: ${tool#*:})"
  done
fi
if [[ -n "${out}" ]]; then
  mkdir -p "${out}"
  out="$(cd "${out}" && pwd)"
fi

netns_setup "${hosts}" "${subnet}"
results="${out:-${netns_workdir}}"
job_seconds=$((smoke ? 60 : 1800))  # a hang is a failure, not a wait
perftest_bytes=$((16 << 20))
perftest_port=13337

# link_bandwidth LINK: ucx_perftest tag_bw from host 1 to host 0; prints the bandwidth and
# leaves it in link_gbs (10^9 B/s).
link_bandwidth() {
  local link="$1" log="${results}/ucx_perftest-$1.txt" start=${SECONDS}
  # 20 messages of 16 MiB after 5 unmeasured: 2.7 s at 1 Gbit/s, a fraction of it plain.
  local args=(-t tag_bw -s "${perftest_bytes}" -n 20 -w 5 -p "${perftest_port}" -v)
  netns_spawn 0 "${netns_workdir}/perftest-${link}.0" ucx_perftest "${args[@]}"
  until ip netns exec "${netns_prefix}-h0" ss -Hltn "sport = :${perftest_port}" | grep -q .; do
    if ((SECONDS - start > 30)) || ! kill -0 "${netns_pids[0]}" 2>/dev/null; then
      echo "netns-perf ${link}: the ucx_perftest server on host 0 did not start listening"
      cat "${netns_workdir}/perftest-${link}.0"
      exit 1
    fi
    sleep 0.1
  done
  netns_spawn 1 "${netns_workdir}/perftest-${link}.1" ucx_perftest "${subnet}.1" "${args[@]}"
  netns_wait_job "ucx_perftest ${link}" 300
  cat "${netns_workdir}/perftest-${link}".{0,1} >"${log}.tmp"
  mv "${log}.tmp" "${log}"
  # -v: CSV, the last line "iterations,...,avg_bw,overall_bw,..." with bandwidths in MiB/s.
  local mibs
  mibs="$(grep -E '^ *[0-9]+,' "${netns_workdir}/perftest-${link}.1" | tail -n 1 | cut -d, -f6)"
  if ((netns_codes[0] != 0 || netns_codes[1] != 0)) || [[ -z "${mibs}" ]]; then
    echo "netns-perf ${link}: ucx_perftest failed (server exit ${netns_codes[0]}, client" \
      "exit ${netns_codes[1]})"
    cat "${log}"
    exit 1
  fi
  link_gbs="$(awk -v m="${mibs}" 'BEGIN { printf "%.4f", m * 1048576 / 1e9 }')"
  echo "netns-perf ${link}: ucx_perftest tag_bw $((perftest_bytes >> 20)) MiB, host 1 -> host 0:" \
    "${mibs} MB/s (MiB/s) = ${link_gbs} GB/s"
}

# all_reduce LINK: chorus-perf on every host; its table, and failure unless every rank
# exits 0 and the results were checked and right (or, outside --smoke, not checked).
all_reduce() {
  local link="$1" start=${SECONDS} i failed=0
  local cmd=("${perf}" all_reduce -t ucx "${perf_args[@]}" --json "${results}/${link}.json")
  echo "netns-perf ${link}: ${cmd[*]} (one rank on each of ${hosts} hosts)"
  netns_start_job "${link}" "${cmd[@]}"
  netns_wait_job "${link}" "${job_seconds}"
  grep -v "UCX  WARN" "${netns_workdir}/${link}.0" >"${results}/${link}.txt" || true
  cat "${results}/${link}.txt"
  for ((i = 0; i < hosts; ++i)); do
    if ((netns_codes[i] != 0)); then
      echo "netns-perf ${link}: rank ${i} failed (exit ${netns_codes[i]})"
      failed=1
    fi
  done
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
  echo "netns-perf ${link}: chorus-perf all_reduce -t ucx ran on ${hosts} hosts" \
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
  echo "netns-perf: chorus-perf -t ucx correct across ${hosts} namespace hosts"
  exit 0
fi
for link in plain shaped; do
  if [[ "${link}" == shaped ]]; then netns_shape; fi
  link_bandwidth "${link}"
  all_reduce "${link}"
  ratios "${link}"
done
if [[ -n "${out}" ]]; then echo "netns-perf: results in ${out}"; fi
