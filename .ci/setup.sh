#!/usr/bin/env bash
# Installs what Vouchsim needs on a fresh machine, and nothing that is already there:
#   - uv (from PyPI), which then builds the Python environment from uv.lock;
#   - libzbar0, the system library pyzbar decodes QR codes with (apt-get when root, else a clear message).
# With --e2e (what `make test` runs), also what the e2e suite drives besides Python:
#   - Debian's chromium, the real browser of the authorization-page tests (Playwright's own browser download
#     does not work on a closed network; the tests point Playwright at /usr/bin/chromium);
#   - the Node clients in e2e/node (the official TypeScript MCP SDK v1 and v2, mcp-remote, the conformance suite
#     and the Node 22 it runs on, from the npm registry), with `npm ci` from its
#     package-lock.json; Node.js 20+ and npm must be on the machine.
# Safe to run again: every step checks first, and says in one line what it found or did.
# When another apt (unattended-upgrades, a second terminal) holds the dpkg lock, it waits for it, saying so, for up
# to VOUCHSIM_SETUP_LOCK_WAIT seconds (300 by default).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
LOCK_WAIT=${VOUCHSIM_SETUP_LOCK_WAIT:-300}
DPKG_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)

if command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1; then
  say "uv: present"
else
  say "uv: installing it from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user uv
fi

dpkg_locked() {
  # fuser (psmisc) tells whether a process holds one of the locks; without it, apt-get's own
  # DPkg::Lock::Timeout below does the waiting, silently.
  command -v fuser >/dev/null 2>&1 || return 1
  fuser "${DPKG_LOCKS[@]}" >/dev/null 2>&1
}

wait_for_dpkg() {
  local waited=0
  while dpkg_locked; do
    if [ "$waited" -ge "$LOCK_WAIT" ]; then
      say "another package manager still holds the dpkg lock after ${LOCK_WAIT}s: let it finish (or stop it), then run this again"
      exit 1
    fi
    if [ $((waited % 15)) = 0 ]; then
      say "another package manager (apt, unattended-upgrades?) holds the dpkg lock; waiting for it (${waited}s of ${LOCK_WAIT}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

run_apt() {
  wait_for_dpkg
  local log
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT" "$@" >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

apt_install() {
  # $1: what the step is; $2: a command or file that proves the package is there; the rest: Debian packages.
  local step=$1 probe=$2; shift 2
  if [ -e "$probe" ] || command -v "$probe" >/dev/null 2>&1; then
    say "$step: present"
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "$step: installing $* with apt-get"
    if ! run_apt install -y -qq "$@"; then
      say "$step: refreshing the package lists first"
      run_apt update -qq
      run_apt install -y -qq "$@"
    fi
    say "$step: installed"
  else
    say "$step: missing system package(s): $*  — install them, e.g. 'sudo apt-get install $*', then run this again"
    exit 1
  fi
}

zbar_present() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }
if zbar_present; then
  say "libzbar0 (QR decoding): present"
else
  apt_install "libzbar0 (QR decoding)" /nonexistent-force-check libzbar0
fi

if [ "${1:-}" = "--e2e" ]; then
  apt_install "chromium (the e2e browser)" /usr/bin/chromium chromium
  if ! command -v npm >/dev/null 2>&1; then
    say "the e2e suite needs Node.js 20+ and npm (for e2e/node): install them, then run this again"
    exit 1
  fi
  lock=e2e/node/package-lock.json stamp=e2e/node/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    say "Node MCP clients (e2e/node): installing them with npm ci"
    npm ci --prefix e2e/node --no-audit --no-fund --loglevel=error >/dev/null
  else
    say "Node MCP clients (e2e/node): up to date"
  fi
fi

uv_cmd() { if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi; }
uv_cmd sync --locked --quiet
say "Python environment (.venv): in step with uv.lock"
