# shellcheck shell=bash
# Shared helpers for tools/test, tools/run-example and .ci/run. Source it; do not run it.
#
#   chorus_require_packages <debian-package>...
#       Installs the packages that are missing, with apt-get (through sudo when not root).
#       Checks with dpkg first, so a second run neither needs the network nor root.
#   chorus_repo_root
#       Prints the repository root (the parent of tools/).
#   chorus_jobs
#       Prints the number of parallel jobs to use: $CHORUS_JOBS, else the processor count.

chorus_repo_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

chorus_jobs() {
  if [[ -n "${CHORUS_JOBS:-}" ]]; then
    echo "${CHORUS_JOBS}"
  else
    nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
  fi
}

chorus_require_packages() {
  local missing=() pkg
  if ! command -v dpkg >/dev/null 2>&1; then
    # Not a Debian-like system: trust the user to have installed the equivalents.
    echo "chorus: no dpkg here; make sure these are installed: $*" >&2
    return 0
  fi
  for pkg in "$@"; do
    if ! dpkg -s "${pkg}" >/dev/null 2>&1; then
      missing+=("${pkg}")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi

  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "chorus: missing packages (${missing[*]}) and not root, and no sudo to install" \
        "them; install them and run again" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "chorus: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}
