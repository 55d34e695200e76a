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
# Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  say "installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user uv
fi

apt_install() {
  # $1: a command or file that proves the package is there; the rest: Debian packages.
  local probe=$1; shift
  if [ -e "$probe" ] || command -v "$probe" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
  else
    say "missing system package(s): $*  — install them, e.g. 'sudo apt-get install $*', then run this again"
    exit 1
  fi
}

zbar_present() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }
if ! zbar_present; then
  apt_install /nonexistent-force-check libzbar0
fi

if [ "${1:-}" = "--e2e" ]; then
  apt_install /usr/bin/chromium chromium
  if ! command -v npm >/dev/null 2>&1; then
    say "the e2e suite needs Node.js 20+ and npm (for e2e/node): install them, then run this again"
    exit 1
  fi
  lock=e2e/node/package-lock.json stamp=e2e/node/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    say "installing the Node MCP clients (e2e/node) with npm ci"
    npm ci --prefix e2e/node --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

uv_cmd() { if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi; }
uv_cmd sync --locked --quiet
