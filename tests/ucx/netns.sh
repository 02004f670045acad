#!/usr/bin/env bash
# Multi-host UCX tests on one machine: every rank on a "host" of its own -- a network
# namespace -- joined to the others by a veth pair to a bridge, UCX_TLS=tcp.
#
#   tests/ucx/netns.sh RANK_PROGRAM RANKS
#
# Topology (all of it inside namespaces created here; the machine's own network namespace
# is never touched): a switch namespace holds bridge br0; host namespace i holds interface
# ch0 with 10.213.0.<i+1>/24, the other end of its veth pair enslaved to br0. Names carry a
# per-run suffix, and a trap deletes every namespace (and with them every interface) on
# any exit, failure or signal.
#
# Jobs, each RANKS processes started with `ip netns exec`, meeting through the tcp_store
# that rank 0 serves on 10.213.0.1 (torchrun-style RANK/WORLD_SIZE + CHORUS_STORE):
#   1. plain links:  RANK_PROGRAM matrix (every collective x algorithm vs the reference)
#   2. shaped links: the same with each host's egress shaped by tc: netem rate 1gbit delay
#      0.2ms, or tbf rate 1gbit where the kernel has no netem
#   3. fault:        RANK_PROGRAM fault (all-reduces forever); the last rank is killed with
#      SIGKILL once every rank runs, and every survivor must exit with
#      chorus::error[peer_lost] naming it within 10 s
#
# Exits 77 (ctest's SKIP_RETURN_CODE) with a message when this machine cannot create
# network namespaces (not root, no iproute2, no kernel support); 0 when all jobs pass.
set -euo pipefail

prog="${1:?usage: netns.sh RANK_PROGRAM RANKS}"
ranks="${2:?usage: netns.sh RANK_PROGRAM RANKS}"
job_seconds=300  # each job's limit; a hang is a failure, not a wait

skip() {
  echo "SKIP: $*"
  exit 77
}
[[ "$(id -u)" == 0 ]] || skip "creating network namespaces needs root (ip netns add)"
command -v ip >/dev/null || skip "ip is not installed (Debian: iproute2)"
command -v tc >/dev/null || skip "tc is not installed (Debian: iproute2)"

suffix="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
prefix="chorus-$$-${suffix}"
workdir="$(mktemp -d)"
namespaces=()
pids=()

cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill -KILL "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${namespaces[@]}"; do ip netns del "${ns}" 2>/dev/null || true; done
  rm -rf "${workdir}"
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- topology
switch="${prefix}-sw"
if ! ip netns add "${switch}" 2>"${workdir}/err"; then
  skip "ip netns add failed: $(cat "${workdir}/err")"
fi
namespaces+=("${switch}")
ip -n "${switch}" link add br0 type bridge
ip -n "${switch}" link set br0 up
for ((i = 0; i < ranks; ++i)); do
  ns="${prefix}-h${i}"
  ip netns add "${ns}"
  namespaces+=("${ns}")
  ip -n "${ns}" link set lo up
  ip -n "${ns}" link add ch0 type veth peer name "p${i}" netns "${switch}"
  ip -n "${switch}" link set "p${i}" master br0
  ip -n "${switch}" link set "p${i}" up
  ip -n "${ns}" addr add "10.213.0.$((i + 1))/24" dev ch0
  ip -n "${ns}" link set ch0 up
done
echo "netns: ${ranks} hosts ${prefix}-h0..$((ranks - 1)) on bridge br0 in ${switch}, 10.213.0.0/24"

# The variables a rank gets: its place in the job, UCX's selection, and the sanitizer
# settings of the test run (nothing else of this environment leaks in).
passthrough=()
for v in PATH ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS; do
  if [[ -n "${!v:-}" ]]; then passthrough+=("${v}=${!v}"); fi
done

# start_job MODE LABEL: starts one rank per host; their pids in `pids`, output in files.
start_job() {
  local mode="$1" label="$2"
  pids=()
  for ((i = 0; i < ranks; ++i)); do
    ip netns exec "${prefix}-h${i}" env -i "${passthrough[@]}" \
      RANK="${i}" WORLD_SIZE="${ranks}" CHORUS_STORE=10.213.0.1:29500 \
      CHORUS_JOB_ID="netns-${suffix}-${label}" CHORUS_TIMEOUT=60 \
      UCX_TLS=tcp UCX_NET_DEVICES=ch0 \
      "${prog}" "${mode}" >"${workdir}/${label}.${i}" 2>&1 &
    pids+=("$!")
  done
}

show_outputs() {
  local label="$1"
  for ((i = 0; i < ranks; ++i)); do
    echo "--- rank ${i}:"
    grep -v "UCX  WARN" "${workdir}/${label}.${i}" | tail -n 20 || true
  done
}

# run_matrix LABEL: every rank must print "rank i: ok" and exit 0 within job_seconds.
run_matrix() {
  local label="$1" start=${SECONDS} failed=0
  start_job matrix "${label}"
  for ((i = 0; i < ranks; ++i)); do
    while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS - start < job_seconds)); do sleep 0.2; done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      echo "netns ${label}: rank ${i} still running after ${job_seconds} s: killed"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    local code=0
    wait "${pids[i]}" || code=$?
    if ((code != 0)) || ! grep -q "^rank ${i}: ok$" "${workdir}/${label}.${i}"; then
      echo "netns ${label}: rank ${i} failed (exit ${code})"
      failed=1
    fi
  done
  pids=()
  if ((failed)); then
    show_outputs "${label}"
    exit 1
  fi
  echo "netns ${label}: every collective x algorithm correct on ${ranks} hosts ($((SECONDS - start)) s)"
}

run_matrix plain

# --- shaped links
shaping="netem rate 1gbit delay 0.2ms"
for ((i = 0; i < ranks; ++i)); do
  if ! ip netns exec "${prefix}-h${i}" tc qdisc add dev ch0 root netem rate 1gbit delay 0.2ms \
    2>/dev/null; then
    shaping="tbf rate 1gbit burst 256kb latency 10ms (this kernel has no netem: no delay)"
    ip netns exec "${prefix}-h${i}" tc qdisc add dev ch0 root tbf rate 1gbit burst 256kb \
      latency 10ms
  fi
done
echo "netns: links shaped with ${shaping}"
run_matrix shaped

# --- fault: kill the last rank mid-all-reduce
victim=$((ranks - 1))
start_job fault fault
start=${SECONDS}
for ((i = 0; i < ranks; ++i)); do
  until grep -q "^rank ${i}: running" "${workdir}/fault.${i}" 2>/dev/null; do
    if ((SECONDS - start > 60)) || ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "netns fault: rank ${i} did not start its all-reduces"
      show_outputs fault
      exit 1
    fi
    sleep 0.05
  done
done
sleep 0.3
disown "${pids[victim]}"  # its death is the point: no job-control notice about it
kill -KILL "${pids[victim]}"
killed_at="$(date +%s.%N)"
failed=0
for ((i = 0; i < ranks; ++i)); do
  ((i == victim)) && continue
  while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS - start < job_seconds)); do sleep 0.02; done
  exited_at="$(date +%s.%N)"
  code=0
  if kill -0 "${pids[i]}" 2>/dev/null; then
    kill -KILL "${pids[i]}" 2>/dev/null || true
    code=137
  fi
  wait "${pids[i]}" || code=$?
  took="$(awk -v a="${killed_at}" -v b="${exited_at}" 'BEGIN { printf "%.2f", b - a }')"
  if ((code != 2)) || ! grep -q "chorus::error\[peer_lost\].*rank ${victim}" "${workdir}/fault.${i}" ||
    awk -v t="${took}" 'BEGIN { exit !(t >= 10) }'; then
    echo "netns fault: rank ${i}: exit ${code} after ${took} s; expected peer_lost naming rank ${victim} within 10 s"
    failed=1
  else
    echo "netns fault: rank ${i} reported peer_lost naming rank ${victim} after ${took} s"
  fi
done
pids=()
if ((failed)); then
  show_outputs fault
  exit 1
fi
echo "netns: all jobs passed on ${ranks} hosts"
