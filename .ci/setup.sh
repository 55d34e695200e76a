#!/usr/bin/env bash
# Installs what Vouchsim needs on a fresh machine, and nothing that is already there:
#   - uv (from PyPI), which then builds the Python environment from uv.lock;
#   - libzbar0, the system library pyzbar decodes QR codes with (apt-get when root, else a clear message).
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

uv_cmd() { if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi; }
uv_cmd sync --locked --quiet
