#!/usr/bin/env bash
# Measures how long user programs take to compile against chorus: the compile-time benchmark.
#
#   bench/compile_time/measure.sh [--repeat N] [--include DIR | --at GITREF]
#                                 [--cxxflags "FLAGS"] [TU.cpp...]
#
#   TU.cpp...          the translation units to compile (default: every .cpp next to this
#                      script); always taken from this checkout; one that does not compile
#                      against the headers gets a "does not compile" row
#   --repeat N         compile each one N times (default 3) and report median, min and max
#   --include DIR      the chorus include directory to compile against (default: this
#                      checkout's include/)
#   --at GITREF        compile against GITREF's include/, checked out in a temporary
#                      `git worktree` that is removed on exit, even on failure
#   --cxxflags FLAGS   extra compiler flags, split on spaces (e.g. "-O0 -g")
#
# Each compile is `g++ -std=c++20 -O2 -pthread -c -o /dev/null`, one at a time, without
# ccache; the time is the CPU time (user + sys) of g++ and its children (cc1plus, as), from
# /usr/bin/time. Also counts the lines of `g++ -E` (line markers included). Prints a
# markdown table on stdout, progress on stderr. Installs g++, GNU time and git when missing.
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib.sh"
root="$(chorus_repo_root)"
here="${root}/bench/compile_time"

repeat=3
include="${root}/include"
at=""
cxxflags=()
tus=()
# Prints the comment block at the top of this file.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "measure.sh: $*" >&2; exit 2; }
while (($# > 0)); do
  case "$1" in
    --repeat) repeat="${2:?--repeat needs a value}"; shift ;;
    --include) include="${2:?--include needs a directory}"; shift ;;
    --at) at="${2:?--at needs a git ref}"; shift ;;
    --cxxflags) read -r -a cxxflags <<<"${2?--cxxflags needs a value}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option '$1'" ;;
    *) tus+=("$1") ;;
  esac
  shift
done
[[ "${repeat}" =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive integer, not '${repeat}'"

chorus_require_packages g++ time git
export CCACHE_DISABLE=1 # in case g++ on PATH is ccache's wrapper
cxx=(g++ -std=c++20 -O2 -pthread)

tmp="$(mktemp -d)"
cleanup() {
  if [[ -d "${tmp}/tree" ]]; then
    git -C "${root}" worktree remove --force "${tmp}/tree" >/dev/null 2>&1 || true
    git -C "${root}" worktree prune
  fi
  rm -rf "${tmp}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${at}" ]]; then
  git -C "${root}" worktree add --quiet --detach "${tmp}/tree" "${at}"
  include="${tmp}/tree/include"
fi
[[ -f "${include}/chorus/chorus.hpp" ]] || die "no chorus/chorus.hpp under '${include}'"

# A TU named on the command line is a path, or the name of a file next to this script.
if ((${#tus[@]} == 0)); then
  tus=("${here}"/*.cpp)
fi
for i in "${!tus[@]}"; do
  if [[ ! -f "${tus[i]}" && -f "${here}/${tus[i]}" ]]; then tus[i]="${here}/${tus[i]}"; fi
  [[ -f "${tus[i]}" ]] || die "no such translation unit: ${tus[i]}"
done

# Prints the median, minimum and maximum of the numbers on stdin.
stats() {
  sort -g | awk '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.2f %.2f %.2f\n", m, v[1], v[NR] }'
}

echo "Compiler: $("${cxx[0]}" --version | head -n 1)"
headers="${include}"
[[ -z "${at}" ]] || headers="${at} ($(git -C "${root}" rev-parse --short "${at}^{commit}"))"
echo "Headers: ${headers}"
echo "Command: ${cxx[*]}${cxxflags[*]:+ ${cxxflags[*]}} -c -o /dev/null, ${repeat} runs each"
echo
echo "| TU | median CPU s | min | max | preprocessed lines |"
echo "|---|---:|---:|---:|---:|"
for tu in "${tus[@]}"; do
  flags=("${cxx[@]}" "${cxxflags[@]}" -I "${include}")
  # A TU the headers cannot compile (compiled_all_reduce.cpp against a commit before
  # compiled mode, with --at) gets a row that says so instead of stopping the table.
  if ! "${flags[@]}" -fsyntax-only "${tu}" 2>"${tmp}/errors"; then
    echo "measure.sh: $(basename "${tu}") does not compile against these headers:" \
      "$(head -n 1 "${tmp}/errors")" >&2
    echo "| $(basename "${tu}") | does not compile | | | |"
    continue
  fi
  lines="$("${flags[@]}" -E "${tu}" | wc -l)"
  for ((i = 1; i <= repeat; i++)); do
    echo "measure.sh: $(basename "${tu}") ${i}/${repeat}" >&2
    /usr/bin/time -f '%U %S' -o "${tmp}/time" "${flags[@]}" -c -o /dev/null "${tu}"
    awk '{ print $1 + $2 }' "${tmp}/time" >>"${tmp}/cpu"
  done
  read -r median min max < <(stats <"${tmp}/cpu")
  rm -f "${tmp}/cpu"
  echo "| $(basename "${tu}") | ${median} | ${min} | ${max} | ${lines} |"
done
