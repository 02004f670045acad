#!/usr/bin/env bash
# Multi-host UCX tests on one machine: every rank on a "host" of its own -- a network
# namespace -- joined to the others by a veth pair to a bridge, UCX_TLS=tcp.
#
#   tests/ucx/netns.sh RANK_PROGRAM RANKS
#
# Topology (netns_lib.sh, shared with bench/perf/netns-perf.sh; all of it inside namespaces
# created here; the machine's own network namespace is never touched): a switch namespace
# holds bridge br0; host namespace i holds interface ch0 with 10.213.0.<i+1>/24, the other
# end of its veth pair enslaved to br0. Names carry a per-run suffix, and a trap deletes
# every namespace (and with them every interface) on any exit, failure or signal.
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

# shellcheck source=tests/ucx/netns_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_lib.sh"
netns_setup "${ranks}" 10.213.0

# run_matrix LABEL: every rank must print "rank i: ok" and exit 0 within job_seconds.
run_matrix() {
  local label="$1" start=${SECONDS} failed=0
  netns_start_job "${label}" "${prog}" matrix
  netns_wait_job "${label}" "${job_seconds}"
  for ((i = 0; i < ranks; ++i)); do
    if ((netns_codes[i] != 0)) || ! grep -q "^rank ${i}: ok$" "${netns_workdir}/${label}.${i}"; then
      echo "netns ${label}: rank ${i} failed (exit ${netns_codes[i]})"
      failed=1
    fi
  done
  if ((failed)); then
    netns_show_outputs "${label}"
    exit 1
  fi
  echo "netns ${label}: every collective x algorithm correct on ${ranks} hosts ($((SECONDS - start)) s)"
}

run_matrix plain

# --- shaped links
netns_shape
run_matrix shaped

# --- fault: kill the last rank mid-all-reduce
netns_start_job fault "${prog}" fault
netns_kill_last fault "${ranks}" 10 "${job_seconds}"
echo "netns: all jobs passed on ${ranks} hosts"
