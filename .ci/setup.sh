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
# With --lint (what `make test` also passes), it runs `make lint`'s checks too (`make lint-checks`: ruff, formatting,
# mypy) as soon as the Python environment is in step, while the other installs go on.
# Safe to run again: every step checks first, and says in one line what it found or did.
# The steps overlap: `npm ci` runs in the background from the start, `uv sync` meanwhile, then (with --lint) the
# checks in the background, while one apt-get call installs the Debian packages that are missing. Only this script
# prints (a background step's output goes to a log, shown if it fails), so lines never mix; it waits for every
# background step and stops at the first that failed, with that step's output and message and a non-zero status
# (and stops the steps still running when it fails or is stopped).
# When another apt (unattended-upgrades, a second terminal) holds the dpkg lock, it waits for it, saying so, for up
# to VOUCHSIM_SETUP_LOCK_WAIT seconds (300 by default).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
E2E=false LINT=false
for arg in "$@"; do
  case $arg in
    --e2e) E2E=true ;;
    --lint) LINT=true ;;
    *) say "unknown option $arg (options: --e2e, --lint)"; exit 2 ;;
  esac
done
LOCK_WAIT=${VOUCHSIM_SETUP_LOCK_WAIT:-300}
DPKG_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
CHROMIUM=/usr/bin/chromium  # where Debian's package puts it, and where the e2e tests look for it

# --- Background steps: each started with what it is; their lines are said as they end. ---
LOGS=$(mktemp -d)
JOB_IDS=()                                   # in the order they were started
declare -A JOB_PID=() JOB_STEP=() JOB_DONE=()  # by id: the process of each step still running, what it is, what to say

stop_jobs() {
  local id
  for id in "${!JOB_PID[@]}"; do kill -TERM -- "-${JOB_PID[$id]}" 2>/dev/null || true; done
  rm -rf "$LOGS"
}
trap stop_jobs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_job() {
  # $1: an id; $2: what the step is; $3: what to say once it succeeded; the rest: its command, run in a process group
  # of its own (setsid), so that stop_jobs stops it with every process it started.
  local id=$1
  JOB_IDS+=("$id") JOB_STEP[$id]=$2 JOB_DONE[$id]=$3
  shift 3
  setsid "$@" >"$LOGS/$id.log" 2>&1 &
  JOB_PID[$id]=$!
  # Until setsid has made that group (a millisecond or so), a signal would reach neither the group nor what it starts.
  while ! kill -0 -- "-$!" 2>/dev/null && kill -0 "$!" 2>/dev/null; do :; done
}

finish_jobs() {
  # Waits for every background step, saying its line as it ends (in the order they were started, for those that
  # ended meanwhile). The first that failed shows its output and its message, and stops the script with its status.
  local id status
  while [ "${#JOB_PID[@]}" != 0 ]; do
    for id in "${JOB_IDS[@]}"; do
      if [ -z "${JOB_PID[$id]:-}" ] || kill -0 "${JOB_PID[$id]}" 2>/dev/null; then continue; fi
      status=0
      wait "${JOB_PID[$id]}" || status=$?
      unset "JOB_PID[$id]"
      if [ "$status" != 0 ]; then
        cat "$LOGS/$id.log" >&2
        say "${JOB_STEP[$id]}: failed (exit status $status); its output is above"
        exit "$status"
      fi
      say "${JOB_STEP[$id]}: ${JOB_DONE[$id]}"
    done
    # Until one more ends (bash's `wait -n` does not count one that ended before it was called: such a step, which
    # ended between the look above and this line, is seen when the next one ends).
    if [ "${#JOB_PID[@]}" != 0 ]; then wait -n || true; fi
  done
}

# --- apt-get, waiting for another apt's dpkg lock. ---
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

# --- What is there, and what is missing (nothing is installed before every check has passed). ---
UV_PRESENT=false
if command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1; then
  UV_PRESENT=true
  say "uv: present"
fi

APT_STEPS=() APT_PACKAGES=()  # the steps that need Debian packages, and those packages
zbar_present() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }
if zbar_present; then
  say "libzbar0 (QR decoding): present"
else
  APT_STEPS+=("libzbar0 (QR decoding)") APT_PACKAGES+=(libzbar0)
fi

NPM_CI=false
if $E2E; then
  if [ -e "$CHROMIUM" ]; then
    say "chromium (the e2e browser): present"
  else
    APT_STEPS+=("chromium (the e2e browser)") APT_PACKAGES+=(chromium)
  fi
  if ! command -v npm >/dev/null 2>&1; then
    say "the e2e suite needs Node.js 20+ and npm (for e2e/node): install them, then run this again"
    exit 1
  fi
  lock=e2e/node/package-lock.json stamp=e2e/node/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    NPM_CI=true
  else
    say "Node MCP clients (e2e/node): up to date"
  fi
fi

if [ "${#APT_PACKAGES[@]}" != 0 ]; then
  printf -v APT_STEP '%s and ' "${APT_STEPS[@]}"
  APT_STEP=${APT_STEP% and }
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "$APT_STEP: missing system package(s): ${APT_PACKAGES[*]}  — install them, e.g. 'sudo apt-get install ${APT_PACKAGES[*]}', then run this again"
    exit 1
  fi
fi

# --- The installs: npm ci in the background, uv sync meanwhile, then the checks in the background, and apt-get. ---
if $NPM_CI; then
  say "Node MCP clients (e2e/node): installing them with npm ci, in the background"
  start_job npm "Node MCP clients (e2e/node)" "installed" npm ci --prefix e2e/node --no-audit --no-fund --loglevel=error
fi

if ! $UV_PRESENT; then
  say "uv: installing it from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user uv
fi
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
status=0
"${UV[@]}" sync --locked --quiet || status=$?
if [ "$status" != 0 ]; then
  say "Python environment (.venv): uv sync failed (exit status $status); its output is above"
  exit "$status"
fi
say "Python environment (.venv): in step with uv.lock"

if $LINT; then
  say "make lint's checks (ruff, formatting, mypy): running them in the background"
  start_job lint "make lint's checks (ruff, formatting, mypy)" "passed" make --no-print-directory lint-checks
fi

if [ "${#APT_PACKAGES[@]}" != 0 ]; then
  say "$APT_STEP: installing ${APT_PACKAGES[*]} with apt-get"
  if ! run_apt install -y -qq "${APT_PACKAGES[@]}"; then
    say "$APT_STEP: refreshing the package lists first"
    run_apt update -qq
    run_apt install -y -qq "${APT_PACKAGES[@]}"
  fi
  say "$APT_STEP: installed"
fi

finish_jobs
