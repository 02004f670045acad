# shellcheck shell=bash
# Hosts on one machine -- network namespaces joined by veth pairs to a bridge -- for
# tests/ucx/netns.sh, bench/perf/netns-perf.sh and bench/perf/compress-netns.sh. Source it;
# do not run it. It sets no shell options; the scripts that source it run under
# `set -euo pipefail`.
#
#   netns_bench_args SCRIPT PERF SUBNET OWN_FLAGS ARGS...
#       The command line of the benchmark scripts (bench/perf/netns-perf.sh,
#       bench/perf/compress-netns.sh): -H/--hosts N (>= 2; default 2), -o/--out DIR (created;
#       default none), --perf PATH (must be executable; default PERF), --subnet A.B.C (default
#       SUBNET), -h/--help (prints SCRIPT's header comment, exits 0), then `--` and the
#       program's own arguments. OWN_FLAGS: SCRIPT's flags without a value, space-separated.
#       Sets netns_arg_hosts, netns_arg_out ("" or absolute), netns_arg_perf (absolute),
#       netns_arg_subnet, netns_arg_flags (the OWN_FLAGS given) and netns_arg_rest (after
#       `--`). Exits 2 for a bad argument, 1 for a missing program.
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
#   netns_start_layout_job LABEL HOSTS COMMAND...
#       Like netns_start_job, but HOSTS (comma-separated, one entry per rank: "0,0,1,1",
#       "0,1,0,1", "0,0,0,1") says on which host each rank runs, so that hosts hold several
#       ranks; each rank also gets LOCAL_RANK and LOCAL_WORLD_SIZE (torchrun's names) and
#       CHORUS_TEST_HOSTS=HOSTS. Sets netns_ranks.
#   netns_kill_last LABEL RANKS LIMIT JOB_SECONDS
#       For a job just started (pids in netns_pids) whose ranks print "rank i: running" once
#       they work: waits (60 s at most) until every rank does, kills the last rank with
#       SIGKILL, and checks that every other rank exits with status 2 and
#       chorus::error[peer_lost] naming it within LIMIT seconds (waiting JOB_SECONDS at most),
#       printing a line per rank. Returns 1 (after the ranks' outputs) if one did not.
#   netns_wait_job LABEL SECONDS
#       Waits for every pid in netns_pids, killing those still running SECONDS after the
#       call (with a line saying so); their exit statuses in netns_codes; empties netns_pids.
#   netns_show_outputs LABEL
#       Prints the last 20 lines of each rank's output of job LABEL (without UCX warnings);
#       netns_ranks ranks (netns_hosts unless a layout job set it).
#   netns_failed LABEL
#       After netns_wait_job: prints "LABEL: rank i failed (exit c)" for every rank whose
#       exit status was not 0; returns 1 when there was one, 0 otherwise.
#   netns_require COMMAND:PACKAGE...
#       Skips (netns_skip) unless every COMMAND is in PATH, naming its Debian PACKAGE.
#   netns_link_rate TAG LOG
#       Measures the link from host 1 to host 0 with ucx_perftest (tag_bw, 16 MiB messages,
#       20 timed after 5 untimed; server on host 0, port 13337) over UCX_TLS=tcp on ch0;
#       both sides' output to LOG. Prints the rate and leaves it in netns_link_gbs (10^9 B/s;
#       ucx_perftest's MB/s are MiB/s). Exits 1 when ucx_perftest fails. Needs ucx_perftest
#       (netns_require ucx_perftest:ucx-utils) and 2 hosts or more.
#
# Variables for the caller: netns_prefix (namespace names: PREFIX-sw, PREFIX-h0...),
# netns_suffix, netns_hosts, netns_ranks, netns_subnet, netns_workdir (a temporary directory, deleted on
# exit), netns_pids, netns_codes, netns_shaping, netns_link_gbs.

# shellcheck disable=SC2034  # netns_arg_*: the caller's variables
netns_bench_args() {
  local script="$1" name own=" $4 "
  name="$(basename "$1")"
  netns_arg_perf="$2"
  netns_arg_subnet="$3"
  netns_arg_hosts=2
  netns_arg_out=""
  netns_arg_flags=()
  netns_arg_rest=()
  shift 4
  while (($# > 0)); do
    case "$1" in
      -H | --hosts) netns_arg_hosts="${2:?$1 needs a value}"; shift ;;
      -o | --out) netns_arg_out="${2:?$1 needs a value}"; shift ;;
      --perf) netns_arg_perf="${2:?$1 needs a value}"; shift ;;
      --subnet) netns_arg_subnet="${2:?$1 needs a value}"; shift ;;
      --) shift; netns_arg_rest=("$@"); break ;;
      -h | --help) sed -n '2,/^set -euo/p' "${script}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *)
        if [[ "$1" != -* || "${own}" != *" $1 "* ]]; then
          echo "${name}: unknown argument '$1' (--help lists them)" >&2
          exit 2
        fi
        netns_arg_flags+=("$1")
        ;;
    esac
    shift
  done
  if ! [[ "${netns_arg_hosts}" =~ ^[0-9]+$ ]] || ((netns_arg_hosts < 2)); then
    echo "${name}: --hosts needs a number >= 2, not '${netns_arg_hosts}'" >&2
    exit 2
  fi
  netns_arg_perf="$(realpath -m "${netns_arg_perf}")"
  if [[ ! -x "${netns_arg_perf}" ]]; then
    echo "${name}: no $(basename "${netns_arg_perf}") at ${netns_arg_perf} (build it, or name" \
      "one with --perf)" >&2
    exit 1
  fi
  if [[ -n "${netns_arg_out}" ]]; then
    mkdir -p "${netns_arg_out}"
    netns_arg_out="$(cd "${netns_arg_out}" && pwd)"
  fi
}

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

netns_start_layout_job() {
  local label="$1" layout="$2" i j h local_rank local_size
  shift 2
  local -a host_of
  IFS=, read -r -a host_of <<<"${layout}"
  netns_ranks=${#host_of[@]}
  netns_pids=()
  for ((i = 0; i < netns_ranks; ++i)); do
    h="${host_of[i]}"
    if ! [[ "${h}" =~ ^[0-9]+$ ]] || ((h >= netns_hosts)); then
      echo "netns_start_layout_job: host '${h}' of rank ${i} is not one of 0..$((netns_hosts - 1))"
      exit 2
    fi
    local_rank=0
    local_size=0
    for ((j = 0; j < netns_ranks; ++j)); do
      if ((host_of[j] == h)); then
        ((j < i)) && ((++local_rank))
        ((++local_size))
      fi
    done
    netns_spawn "${h}" "${netns_workdir}/${label}.${i}" \
      RANK="${i}" WORLD_SIZE="${netns_ranks}" LOCAL_RANK="${local_rank}" \
      LOCAL_WORLD_SIZE="${local_size}" CHORUS_TEST_HOSTS="${layout}" \
      CHORUS_STORE="${netns_subnet}.$((host_of[0] + 1)):29500" \
      CHORUS_JOB_ID="netns-${netns_suffix}-${label}" CHORUS_TIMEOUT=60 "$@"
  done
}

netns_kill_last() {
  local label="$1" ranks="$2" limit="$3" job_seconds="$4" i code took exited_at failed=0
  local victim=$((ranks - 1)) start=${SECONDS} killed_at
  local -a pids=("${netns_pids[@]}")
  for ((i = 0; i < ranks; ++i)); do
    until grep -q "^rank ${i}: running" "${netns_workdir}/${label}.${i}" 2>/dev/null; do
      if ((SECONDS - start > 60)) || ! kill -0 "${pids[i]}" 2>/dev/null; then
        echo "netns ${label}: rank ${i} did not start its all-reduces"
        netns_show_outputs "${label}"
        return 1
      fi
      sleep 0.05
    done
  done
  sleep 0.3
  disown "${pids[victim]}"  # its death is the point: no job-control notice about it
  kill -KILL "${pids[victim]}"
  killed_at="$(date +%s.%N)"
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
    if ((code != 2)) ||
      ! grep -q "chorus::error\[peer_lost\].*rank ${victim}\b" "${netns_workdir}/${label}.${i}" ||
      awk -v t="${took}" -v l="${limit}" 'BEGIN { exit !(t >= l) }'; then
      echo "netns ${label}: rank ${i}: exit ${code} after ${took} s; expected peer_lost naming" \
        "rank ${victim} within ${limit} s"
      failed=1
    else
      echo "netns ${label}: rank ${i} reported peer_lost naming rank ${victim} after ${took} s"
    fi
  done
  netns_pids=()
  if ((failed)); then
    netns_show_outputs "${label}"
    return 1
  fi
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
  for ((i = 0; i < ${netns_ranks:-${netns_hosts}}; ++i)); do
    echo "--- rank ${i}:"
    grep -v "UCX  WARN" "${netns_workdir}/${label}.${i}" | tail -n 20 || true
  done
}

netns_failed() {
  local label="$1" i failed=0
  for ((i = 0; i < ${#netns_codes[@]}; ++i)); do
    if ((netns_codes[i] != 0)); then
      echo "${label}: rank ${i} failed (exit ${netns_codes[i]})"
      failed=1
    fi
  done
  return "${failed}"
}

netns_require() {
  local tool
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null ||
      netns_skip "${tool%%:*} is not installed (Debian: ${tool#*:})"
  done
}

netns_link_rate() {
  local tag="$1" log="$2" start=${SECONDS} port=13337 bytes=$((16 << 20))
  # 20 messages of 16 MiB after 5 unmeasured: 2.7 s at 1 Gbit/s, a fraction of it unshaped.
  local args=(-t tag_bw -s "${bytes}" -n 20 -w 5 -p "${port}" -v)
  local out="${netns_workdir}/perftest-${tag}"
  netns_spawn 0 "${out}.0" ucx_perftest "${args[@]}"
  until ip netns exec "${netns_prefix}-h0" ss -Hltn "sport = :${port}" | grep -q .; do
    if ((SECONDS - start > 30)) || ! kill -0 "${netns_pids[0]}" 2>/dev/null; then
      echo "netns ucx_perftest ${tag}: the server on host 0 did not start listening"
      cat "${out}.0"
      exit 1
    fi
    sleep 0.1
  done
  netns_spawn 1 "${out}.1" ucx_perftest "${netns_subnet}.1" "${args[@]}"
  netns_wait_job "ucx_perftest ${tag}" 300
  cat "${out}".{0,1} >"${log}.tmp"
  mv "${log}.tmp" "${log}"
  # -v: CSV, the last line "iterations,...,avg_bw,overall_bw,..." with bandwidths in MiB/s.
  local mibs
  mibs="$(grep -E '^ *[0-9]+,' "${out}.1" | tail -n 1 | cut -d, -f6)"
  if ((netns_codes[0] != 0 || netns_codes[1] != 0)) || [[ -z "${mibs}" ]]; then
    echo "netns ucx_perftest ${tag}: failed (server exit ${netns_codes[0]}, client exit" \
      "${netns_codes[1]})"
    cat "${log}"
    exit 1
  fi
  netns_link_gbs="$(awk -v m="${mibs}" 'BEGIN { printf "%.4f", m * 1048576 / 1e9 }')"
  echo "netns ucx_perftest ${tag}: tag_bw $((bytes >> 20)) MiB, host 1 -> host 0:" \
    "${mibs} MB/s (MiB/s) = ${netns_link_gbs} GB/s"
}
