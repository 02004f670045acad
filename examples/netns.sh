#!/usr/bin/env bash
# The parallelism examples over UCX across hosts on one machine: each host a network
# namespace joined to the others by a veth pair to a bridge (tests/ucx/netns_lib.sh),
# UCX_TLS=tcp, every example started with `--transport ucx`.
#
#   examples/netns.sh HOSTS JOB...
#
# A JOB is one argument, fields separated by '|':
#
#   NAME|LAYOUT|PATTERN|PROGRAM ARG...
#
# LAYOUT says on which host each rank runs, one entry per rank ("0,1,2,3": one rank per
# host; "0,0,1,1": two per host), PATTERN is an extended regular expression that rank 0's
# output must match (the example's OK line), and PROGRAM ARG... is split on spaces. Every
# rank must exit 0 within the job's limit, but for NAME@R: rank R kills itself on purpose
# (elastic_training --kill R:...) and must end by SIGKILL (exit status 137). Host i is 10.216.0.<i+1>; rank 0's host serves
# the tcp_store. The jobs run one after another on one topology, which a trap deletes on
# any exit.
#
# Exits 77 (ctest's SKIP_RETURN_CODE) with a message when this machine cannot create
# network namespaces (not root, no iproute2, no kernel support); 0 when every job passed.
set -euo pipefail

hosts="${1:?usage: netns.sh HOSTS 'NAME|LAYOUT|PATTERN|PROGRAM ARG...'...}"
shift
(($# > 0)) || { echo "netns.sh: no job given" >&2; exit 2; }
job_seconds=300  # each job's limit; a hang is a failure, not a wait

# shellcheck source=tests/ucx/netns_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/ucx/netns_lib.sh"
netns_setup "${hosts}" 10.216.0

failed=0
for job in "$@"; do
  IFS='|' read -r name layout pattern command <<<"${job}"
  if [[ -z "${name}" || -z "${layout}" || -z "${pattern}" || -z "${command}" ]]; then
    echo "netns.sh: a job is NAME|LAYOUT|PATTERN|PROGRAM ARG..., not '${job}'" >&2
    exit 2
  fi
  read -r -a argv <<<"${command}"
  victim=""
  if [[ "${name}" == *@* ]]; then
    victim="${name#*@}"
    name="${name%@*}"
  fi
  start=${SECONDS}
  netns_start_layout_job "${name}" "${layout}" "${argv[@]}" --transport ucx
  netns_wait_job "${name}" "${job_seconds}"
  if [[ -n "${victim}" ]]; then
    if ((netns_codes[victim] != 137)); then
      echo "${name}: rank ${victim} was to kill itself (exit 137), but exited ${netns_codes[victim]}"
      netns_codes[victim]=1
    else
      netns_codes[victim]=0
    fi
  fi
  if netns_failed "${name}" && grep -Eq -- "${pattern}" "${netns_workdir}/${name}.0"; then
    echo "netns ${name}: ${netns_ranks} ranks on hosts ${layout} passed ($((SECONDS - start)) s):"
    grep -E -- "${pattern}" "${netns_workdir}/${name}.0" | sed 's/^/    /'
  else
    echo "netns ${name}: FAILED (ranks on hosts ${layout}; rank 0's output must match" \
      "'${pattern}')"
    netns_show_outputs "${name}"
    failed=1
  fi
done
((failed == 0)) || exit 1
echo "netns: every example passed over UCX on ${hosts} hosts"
