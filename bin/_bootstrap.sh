# shellcheck shell=bash
# Sourced by bin/dev and bin/test: make sure the system packages the local stack runs are there
# (installed with apt-get when running as root, else the command to run is printed), and that
# <repo>/.venv exists (Python 3.11+) and holds this project installed editable with its `dev`
# extra. Reinstalls only when pyproject.toml changed since the last install (its hash is kept in
# .venv/.hekaton-installed).

HEKATON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HEKATON_ROOT/.venv"
STAMP="$VENV/.hekaton-installed"

_bootstrap_say() { echo "bootstrap: $*" >&2; }

# System packages as "command:debian-package" pairs: the package is needed where the command is
# missing. Tests that need a missing one skip with a message naming the package.
# chromium runs the dashboard's browser test (Playwright drives it; no browser is downloaded);
# bin/test runs shellcheck on every shell script.
HEKATON_SYSTEM_PACKAGES=("prometheus:prometheus" "chromium:chromium" "shellcheck:shellcheck")

# ensure_system_packages PAIR...: install the packages of the missing commands. As root with
# apt-get: `apt-get update` (once per run) then `apt-get install -y`. Otherwise print the exact
# command and carry on. With HEKATON_STRICT_PACKAGES=1 (CI) a package that is still missing
# afterwards is an error.
ensure_system_packages() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    _bootstrap_say "installing system package(s): ${missing[*]} (apt-get)"
    local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
    if [[ -z "${_HEKATON_APT_UPDATED:-}" ]]; then
      "${apt[@]}" update >&2 && _HEKATON_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends \
      "${missing[@]}" >&2 || _bootstrap_say "error: apt-get install ${missing[*]} failed (see above)"
  else
    _bootstrap_say "missing system package(s): ${missing[*]}; install them with:"
    _bootstrap_say "  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    _bootstrap_say "(until then \`hekaton up\` refuses to start and the tests that need them skip)"
  fi
  local still=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || still+=("${pair#*:}")
  done
  if ((${#still[@]})) && [[ "${HEKATON_STRICT_PACKAGES:-}" == 1 ]]; then
    _bootstrap_say "error: system package(s) still missing: ${still[*]} (HEKATON_STRICT_PACKAGES=1)"
    exit 1
  fi
}

_python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

_find_python() {
  local candidate
  for candidate in ${HEKATON_PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

_project_hash() { sha256sum "$HEKATON_ROOT/pyproject.toml" | cut -d' ' -f1; }

_up_to_date() {
  [[ -x "$VENV/bin/python" && -x "$VENV/bin/hekaton" && -f "$STAMP" ]] &&
    _python_ok "$VENV/bin/python" && [[ "$(cat "$STAMP")" == "$(_project_hash)" ]]
}

bootstrap() {
  ensure_system_packages "${HEKATON_SYSTEM_PACKAGES[@]}"
  _up_to_date && return 0
  mkdir -p "$VENV"
  # Two scripts bootstrapping at once (bin/dev and bin/test in two terminals) take turns.
  local lock_fd
  exec {lock_fd}>"$VENV/.bootstrap.lock"
  command -v flock >/dev/null 2>&1 && flock "$lock_fd"
  if _up_to_date; then
    exec {lock_fd}>&-
    return 0
  fi
  local started=$SECONDS
  if [[ ! -x "$VENV/bin/python" ]] || ! _python_ok "$VENV/bin/python"; then
    local python
    if ! python="$(_find_python)"; then
      _bootstrap_say "error: Python 3.11 or newer is required (tried python3.13, python3.12, python3.11, python3)."
      _bootstrap_say "install it, e.g. 'apt-get install python3 python3-venv', or set HEKATON_PYTHON=/path/to/python3.11"
      exit 1
    fi
    _bootstrap_say "creating $VENV with $python ($("$python" --version 2>&1))"
    if ! "$python" -m venv "$VENV"; then
      _bootstrap_say "error: '$python -m venv' failed; on Debian/Ubuntu install python3-venv"
      exit 1
    fi
  fi
  _bootstrap_say "installing hekaton[dev] into $VENV (pyproject.toml is new or changed)"
  if ! "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e "${HEKATON_ROOT}[dev]"; then
    _bootstrap_say "error: pip install failed (see above); fix it and run the command again"
    exit 1
  fi
  _project_hash >"$STAMP"
  _bootstrap_say "ready in $((SECONDS - started))s"
  exec {lock_fd}>&-
}
