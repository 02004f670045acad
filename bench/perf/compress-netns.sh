#!/usr/bin/env bash
# Compressed all-reduce over UCX (tcp) between hosts that are network namespaces on this
# machine, on links shaped to 1 Gbit/s: chorus-compress-perf's time per call of each method
# against compress::report's prediction at the link rate that ucx_perftest measures on the
# same links (issue 8, "over a shaped link"; results in docs/compression.md).
#
#   bench/perf/compress-netns.sh [OPTIONS] [-- COMPRESS_PERF_ARGS...]
#
#   -H, --hosts N      hosts, one rank each; default 2
#   -o, --out DIR      keep the results in DIR: chorus-compress-perf's table and JSON
#                      (compress.txt, compress.json) and ucx_perftest's output
#                      (ucx_perftest.txt); without it they are deleted on exit
#   --perf PATH        the chorus-compress-perf to run; default
#                      build/bench/perf/chorus-compress-perf of this checkout
#   --subnet A.B.C     the hosts' /24 (host i is A.B.C.<i+1>); default 10.215.0, apart from
#                      netns-perf.sh's 10.214.0 and tests/ucx/netns.sh's 10.213.0
#   --plain            leave the links unshaped
#   COMPRESS_PERF_ARGS added to `chorus-compress-perf --link-gbps RATE --json F`, e.g.
#                      --iters 5 --warmup 2 (its defaults: 64M, all four methods)
#
# The topology and the link measurement are tests/ucx/netns_lib.sh's: host i is a namespace
# with interface ch0, joined to the others through a bridge; each host's egress is shaped
# with tc (netem rate 1gbit, or tbf rate 1gbit where the kernel has no netem); ucx_perftest
# tag_bw (16 MiB messages, host 1 to host 0, UCX_TLS=tcp UCX_NET_DEVICES=ch0) gives the rate
# passed as --link-gbps (its MiB/s converted to 10^9 bit/s). The ranks are started as
# netns_start_job starts them (RANK, WORLD_SIZE, CHORUS_STORE on host 0).
#
# Needs root (ip netns), iproute2 and ucx_perftest (Debian: ucx-utils); exits 77 with a
# message ("SKIP: ...") when it cannot run. Every namespace and every process it started
# are gone when it exits, however it exits. Exits 0 when every rank succeeded and every
# result checked right (whatever the times), 1 otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/ucx/netns_lib.sh
source "${root}/tests/ucx/netns_lib.sh"
netns_bench_args "${BASH_SOURCE[0]}" "${root}/build/bench/perf/chorus-compress-perf" 10.215.0 \
  --plain "$@"
hosts="${netns_arg_hosts}"
out="${netns_arg_out}"
perf="${netns_arg_perf}"
subnet="${netns_arg_subnet}"
perf_args=("${netns_arg_rest[@]}")
shape=$((${#netns_arg_flags[@]} == 0))
netns_require ucx_perftest:ucx-utils

netns_setup "${hosts}" "${subnet}"
results="${out:-${netns_workdir}}"
# A hang is a failure, not a wait: the default run (64 MiB, 4 methods, 7 calls each) takes
# under a minute at 1 Gbit/s.
job_seconds=1200

if ((shape)); then netns_shape; fi
netns_link_rate link "${results}/ucx_perftest.txt"
link_gbps="$(awk -v g="${netns_link_gbs}" 'BEGIN { printf "%.4f", g * 8 }')"

start=${SECONDS}
cmd=("${perf}" --link-gbps "${link_gbps}" --json "${results}/compress.json" "${perf_args[@]}")
echo "compress-netns: ${cmd[*]} (one rank on each of ${hosts} hosts)"
netns_start_job compress "${cmd[@]}"
netns_wait_job compress "${job_seconds}"
grep -v "UCX  WARN" "${netns_workdir}/compress.0" >"${results}/compress.txt" || true
cat "${results}/compress.txt"
if ! netns_failed compress-netns; then
  netns_show_outputs compress
  exit 1
fi
echo "compress-netns: chorus-compress-perf ran on ${hosts} hosts ($((SECONDS - start)) s)"
if [[ -n "${out}" ]]; then echo "compress-netns: results in ${out}"; fi
