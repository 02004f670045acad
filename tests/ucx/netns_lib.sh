# shellcheck shell=bash
# Hosts on one machine -- network namespaces joined by veth pairs to a bridge -- for
# tests/ucx/netns.sh and bench/perf/netns-perf.sh. Source it; do not run it. It sets no
# shell options; the scripts that source it run under `set -euo pipefail`.
#
#   netns_skip MESSAGE...
#       Prints "SKIP: MESSAGE..." and exits 77 (ctest's SKIP_RETURN_CODE).
#   netns_setup HOSTS SUBNET
#       Skips (netns_skip) when this machine cannot create network namespaces (not root, no
#       iproute2, no kernel support). Otherwise builds the topology -- a switch namespace
#       holding bridge br0; host namespace i holding interface ch0 with SUBNET.<i+1>/24
#       (SUBNET is three octets, e.g. 10.213.0), the other end of its veth pair enslaved to
#       br0 -- and installs the trap that, on any exit, failure or signal, kills what
#       netns_spawn started and deletes every namespace (and with them every interface) and
#       netns_workdir. Names carry a per-run suffix, so that runs never meet; two runs at once
#       need different SUBNETs only because the store address is SUBNET.1 in both.
#       The machine's own network namespace is never touched.
#   netns_shape
#       Shapes each host's egress with tc: netem rate 1gbit delay 0.2ms, or tbf rate 1gbit
#       where the kernel has no netem; prints which (netns_shaping holds it).
#   netns_spawn HOST OUTPUT [VAR=VALUE...] COMMAND...
#       Starts COMMAND in the background in host HOST's namespace with a clean environment:
#       PATH and the sanitizer settings of this one, UCX_TLS=tcp UCX_NET_DEVICES=ch0, then
#       the VAR=VALUEs. Output (both streams) to OUTPUT; the pid -- COMMAND's own, `ip netns
#       exec` and env exec it -- is appended to netns_pids.
#   netns_start_job LABEL COMMAND...
#       One rank of COMMAND per host (torchrun-style RANK/WORLD_SIZE, the tcp_store that rank
#       0 serves on SUBNET.1:29500, CHORUS_JOB_ID, CHORUS_TIMEOUT=60); rank i's output in
#       netns_workdir/LABEL.i, the pids in netns_pids (replacing what was there).
#   netns_wait_job LABEL SECONDS
#       Waits for every pid in netns_pids, killing those still running SECONDS after the
#       call (with a line saying so); their exit statuses in netns_codes; empties netns_pids.
#   netns_show_outputs LABEL
#       Prints the last 20 lines of each rank's output of job LABEL (without UCX warnings).
#
# Variables for the caller: netns_prefix (namespace names: PREFIX-sw, PREFIX-h0...),
# netns_suffix, netns_hosts, netns_subnet, netns_workdir (a temporary directory, deleted on
# exit), netns_pids, netns_codes, netns_shaping.

netns_skip() {
  echo "SKIP: $*"
  exit 77
}

netns_cleanup() {
  local status=$? p ns
  for p in "${netns_pids[@]}"; do kill -KILL "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "${netns_namespaces[@]}"; do ip netns del "${ns}" 2>/dev/null || true; done
  rm -rf "${netns_workdir}"
  exit "${status}"
}

netns_setup() {
  netns_hosts="$1"
  netns_subnet="$2"
  [[ "$(id -u)" == 0 ]] || netns_skip "creating network namespaces needs root (ip netns add)"
  command -v ip >/dev/null || netns_skip "ip is not installed (Debian: iproute2)"
  command -v tc >/dev/null || netns_skip "tc is not installed (Debian: iproute2)"

  netns_suffix="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  netns_prefix="chorus-$$-${netns_suffix}"
  netns_workdir="$(mktemp -d)"
  netns_namespaces=()
  netns_pids=()
  netns_codes=()
  trap netns_cleanup EXIT
  trap 'exit 130' INT TERM

  local switch="${netns_prefix}-sw" i ns
  if ! ip netns add "${switch}" 2>"${netns_workdir}/err"; then
    netns_skip "ip netns add failed: $(cat "${netns_workdir}/err")"
  fi
  netns_namespaces+=("${switch}")
  ip -n "${switch}" link add br0 type bridge
  ip -n "${switch}" link set br0 up
  for ((i = 0; i < netns_hosts; ++i)); do
    ns="${netns_prefix}-h${i}"
    ip netns add "${ns}"
    netns_namespaces+=("${ns}")
    ip -n "${ns}" link set lo up
    ip -n "${ns}" link add ch0 type veth peer name "p${i}" netns "${switch}"
    ip -n "${switch}" link set "p${i}" master br0
    ip -n "${switch}" link set "p${i}" up
    ip -n "${ns}" addr add "${netns_subnet}.$((i + 1))/24" dev ch0
    ip -n "${ns}" link set ch0 up
  done
  echo "netns: ${netns_hosts} hosts ${netns_prefix}-h0..$((netns_hosts - 1)) on bridge br0" \
    "in ${switch}, ${netns_subnet}.0/24"

  # The variables a process in a host gets besides its own: the sanitizer settings of the
  # run and UCX's tuning variables (UCX_RNDV_SCHEME, ...; UCX_TLS and UCX_NET_DEVICES are
  # set per host after them). Nothing else of this environment leaks in.
  netns_passthrough=()
  local v
  for v in PATH ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS $(compgen -e UCX_ || true); do
    if [[ -n "${!v:-}" ]]; then netns_passthrough+=("${v}=${!v}"); fi
  done
}

netns_shape() {
  local i
  netns_shaping="netem rate 1gbit delay 0.2ms"
  for ((i = 0; i < netns_hosts; ++i)); do
    if ! ip netns exec "${netns_prefix}-h${i}" tc qdisc add dev ch0 root netem rate 1gbit \
      delay 0.2ms 2>/dev/null; then
      netns_shaping="tbf rate 1gbit burst 256kb latency 10ms (this kernel has no netem: no delay)"
      ip netns exec "${netns_prefix}-h${i}" tc qdisc add dev ch0 root tbf rate 1gbit \
        burst 256kb latency 10ms
    fi
  done
  echo "netns: links shaped with ${netns_shaping}"
}

netns_spawn() {
  local host="$1" output="$2"
  shift 2
  ip netns exec "${netns_prefix}-h${host}" env -i "${netns_passthrough[@]}" \
    UCX_TLS=tcp UCX_NET_DEVICES=ch0 "$@" >"${output}" 2>&1 &
  netns_pids+=("$!")
}

netns_start_job() {
  local label="$1" i
  shift
  netns_pids=()
  for ((i = 0; i < netns_hosts; ++i)); do
    netns_spawn "${i}" "${netns_workdir}/${label}.${i}" \
      RANK="${i}" WORLD_SIZE="${netns_hosts}" CHORUS_STORE="${netns_subnet}.1:29500" \
      CHORUS_JOB_ID="netns-${netns_suffix}-${label}" CHORUS_TIMEOUT=60 "$@"
  done
}

netns_wait_job() {
  local label="$1" seconds="$2" start=${SECONDS} i code
  netns_codes=()
  for ((i = 0; i < ${#netns_pids[@]}; ++i)); do
    while kill -0 "${netns_pids[i]}" 2>/dev/null && ((SECONDS - start < seconds)); do
      sleep 0.2
    done
    if kill -0 "${netns_pids[i]}" 2>/dev/null; then
      echo "netns ${label}: rank ${i} still running after ${seconds} s: killed"
      kill -KILL "${netns_pids[i]}" 2>/dev/null || true
    fi
    code=0
    wait "${netns_pids[i]}" || code=$?
    netns_codes+=("${code}")
  done
  netns_pids=()
}

netns_show_outputs() {
  local label="$1" i
  for ((i = 0; i < netns_hosts; ++i)); do
    echo "--- rank ${i}:"
    grep -v "UCX  WARN" "${netns_workdir}/${label}.${i}" | tail -n 20 || true
  done
}
