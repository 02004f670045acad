#!/usr/bin/env bash
# Groups and hierarchical collectives across hosts on one machine: network namespaces as
# in netns.sh, several ranks per namespace host, UCX_TLS=tcp.
#
#   tests/ucx/netns-groups.sh RANK_PROGRAM HOSTS
#
# HOSTS gives each rank's host, comma-separated: "0,0,1,1" (2 hosts x 2 ranks), "0,1,0,1"
# (the same, ranks placed round-robin), "0,0,1,1,2,2" (3 x 2), "0,0,0,1" (3 + 1).
# Jobs (netns_lib.sh: netns_start_layout_job):
#   1. groups: RANK_PROGRAM groups -- the hosts the transport found match HOSTS; split
#      groups and mesh axes run every collective; the hierarchical algorithm (named and
#      chosen automatically) gives exact results on the world and on a group; split with
#      inconsistent arguments fails with mismatch on every rank.
#   2. fault: RANK_PROGRAM group-fault (every rank all-reduces forever in the group of the
#      ranks of its parity); the last rank is killed with SIGKILL once every rank runs, and
#      every other rank of the job -- those of the other group too -- must exit with
#      chorus::error[peer_lost] naming it within 5 s.
#
# Exits 77 (ctest's SKIP_RETURN_CODE) with a message when this machine cannot create
# network namespaces (not root, no iproute2, no kernel support); 0 when both jobs pass.
set -euo pipefail

prog="${1:?usage: netns-groups.sh RANK_PROGRAM HOSTS}"
layout="${2:?usage: netns-groups.sh RANK_PROGRAM HOSTS}"
job_seconds=400  # a hang is a failure, not a wait

IFS=, read -r -a host_of <<<"${layout}"
hosts=0
for h in "${host_of[@]}"; do ((h + 1 > hosts)) && hosts=$((h + 1)); done
ranks=${#host_of[@]}

# shellcheck source=tests/ucx/netns_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_lib.sh"
netns_setup "${hosts}" 10.214.0

# --- groups
start=${SECONDS}
netns_start_layout_job groups "${layout}" "${prog}" groups
netns_wait_job groups "${job_seconds}"
failed=0
for ((i = 0; i < ranks; ++i)); do
  if ((netns_codes[i] != 0)) || ! grep -q "^rank ${i}: ok$" "${netns_workdir}/groups.${i}"; then
    echo "netns groups: rank ${i} failed (exit ${netns_codes[i]})"
    failed=1
  fi
done
if ((failed)); then
  netns_show_outputs groups
  exit 1
fi
echo "netns groups: split, mesh and hierarchical collectives correct, hosts ${layout}" \
  "($((SECONDS - start)) s)"

# --- fault: kill the last rank while every group all-reduces
netns_start_layout_job fault "${layout}" "${prog}" group-fault
netns_kill_last fault "${ranks}" 5 "${job_seconds}"
echo "netns groups: all jobs passed, hosts ${layout}"
