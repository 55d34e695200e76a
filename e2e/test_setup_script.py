"""`.ci/setup.sh` (what `make demo` and `make test` run first): it prints one line per step; it installs the Debian
packages that are missing in one apt-get call while `npm ci` (and, with --lint, `make lint`'s checks) run in the
background, and stops at a step that failed with that step's output and message, stopping the others; on a machine
where another apt holds the dpkg lock it waits for the lock, saying so, instead of failing at once. Run as bash runs
it, with `apt-get`, `fuser`, `ldconfig`, `id`, `npm`, `uv`, `make` and `sleep` stood in for by scripts that record
what they were asked (installing packages for real is not what this test is for), on a copy of the script whose
Chromium is looked for in the test's directory."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from e2e.harness import REPO

pytestmark = pytest.mark.e2e

SETUP = REPO / ".ci" / "setup.sh"
REAL_SLEEP = "/bin/sleep"  # `sleep` itself is a fake that records the dpkg-lock waits
LINT_STEP = "make lint's checks (ruff, formatting, mypy)"
BOTH_PACKAGES = "libzbar0 (QR decoding) and chromium (the e2e browser)"


def fake_machine(
    tmp_path: Path, *, locked_checks: int = 0, chromium: bool = True, fakes: dict[str, str] | None = None
) -> tuple[dict[str, str], Path, Path]:
    """A PATH whose `fuser` reports the dpkg lock held for the first `locked_checks` looks, and a copy of the
    repository's set-up script (with e2e/node's lock file) to run on it; the log of calls. `fakes` replace or add
    stand-ins (name: shell script body)."""
    bin_dir, log, repo = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "repo"
    bin_dir.mkdir()
    (repo / ".ci").mkdir(parents=True)
    (repo / "e2e" / "node").mkdir(parents=True)
    (repo / "e2e" / "node" / "package-lock.json").write_text("{}\n")
    chromium_path = tmp_path / "chromium"
    if chromium:
        chromium_path.write_text("")
    script = SETUP.read_text()
    assert script.count("CHROMIUM=/usr/bin/chromium ") == 1
    (repo / ".ci" / "setup.sh").write_text(script.replace("CHROMIUM=/usr/bin/chromium ", f"CHROMIUM={chromium_path} "))
    counter = tmp_path / "fuser-calls"
    scripts = {
        "id": "echo 0",
        "ldconfig": "exit 0",  # no libzbar on this machine
        "sleep": f'echo "sleep $*" >> {log}',
        "uv": f'echo "uv $*" >> {log}',
        "npm": f'echo "npm $*" >> {log}',
        "make": f'echo "make $*" >> {log}',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "fuser": (
            f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}; [ "$n" -lt {locked_checks} ]'
        ),
        **(fakes or {}),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path), "VOUCHSIM_SETUP_LOCK_WAIT": "60"}
    return env, log, repo / ".ci" / "setup.sh"


def run_setup(env: dict[str, str], script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def slow_step(pid_file: Path) -> str:
    """A stand-in that runs for 30 s in a child process (as make runs ruff and mypy), and writes that child's pid."""
    return f"{REAL_SLEEP} 30 & echo $! > {pid_file}.new; mv {pid_file}.new {pid_file}; wait"


def once_there(pid_file: Path, body: str) -> str:
    """A stand-in that does `body` once the slow step has written its child's pid (so there is a child to stop), or
    after 5 s."""
    return f"i=0; until [ -e {pid_file} ] || [ $i = 500 ]; do {REAL_SLEEP} 0.01; i=$((i + 1)); done; {body}"


def still_running(pid_file: Path) -> bool:
    """Whether the process whose pid is there still runs 2 s on (one stopped before it wrote the file does not; one
    stopped after it is a zombie until the machine's init reaps it)."""
    if not pid_file.exists():
        return False
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except FileNotFoundError:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.requirement("SETUP-DPKG-LOCK")
def test_setup_waits_for_the_dpkg_lock_saying_so_then_installs(tmp_path: Path) -> None:
    env, log, script = fake_machine(tmp_path, locked_checks=3)
    done = run_setup(env, script)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "setup: uv: present",
        "setup: Python environment (.venv): in step with uv.lock",
        "setup: libzbar0 (QR decoding): installing libzbar0 with apt-get",
        "setup: another package manager (apt, unattended-upgrades?) holds the dpkg lock; waiting for it (0s of 60s)",
        "setup: libzbar0 (QR decoding): installed",
    ]
    assert log.read_text().splitlines() == [
        "uv sync --locked --quiet",
        "sleep 1",
        "sleep 1",
        "sleep 1",
        "apt-get -o DPkg::Lock::Timeout=60 install -y -qq libzbar0",
    ]


@pytest.mark.requirement("SETUP-DPKG-LOCK")
def test_setup_gives_up_on_a_lock_that_is_never_released_with_one_clear_line(tmp_path: Path) -> None:
    # The npm ci still running in the background when apt gives up is stopped, not left behind.
    npm_child = tmp_path / "npm-child.pid"
    fakes = {"npm": slow_step(npm_child), "fuser": once_there(npm_child, "exit 0")}  # the lock is always held
    env, log, script = fake_machine(tmp_path, fakes=fakes)
    env["VOUCHSIM_SETUP_LOCK_WAIT"] = "20"
    done = run_setup(env, script, "--e2e")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[-1] == (
        "setup: another package manager still holds the dpkg lock after 20s: let it finish (or stop it), then run "
        "this again"
    )
    assert [line for line in lines if "waiting for it" in line] == [
        "setup: another package manager (apt, unattended-upgrades?) holds the dpkg lock; waiting for it (0s of 20s)",
        "setup: another package manager (apt, unattended-upgrades?) holds the dpkg lock; waiting for it (15s of 20s)",
    ]
    assert "apt-get" not in log.read_text()
    assert not still_running(npm_child)


def overlap_witness(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for npm and make that leave a mark when they start, and an apt-get that succeeds only when both
    marks appear while it runs: so the run passes only if npm ci and the checks run while apt-get works. The checks
    end after npm ci, so that the order of their lines is known."""
    marks, calls = tmp_path / "marks", tmp_path / "calls.log"
    marks.mkdir()
    return {
        "npm": f'echo "npm $*" >> {calls}; touch {marks}/npm; {REAL_SLEEP} 0.2; touch {marks}/npm-done',
        "make": (
            f'echo "make $*" >> {calls}; touch {marks}/make; '
            f"until [ -e {marks}/npm-done ]; do {REAL_SLEEP} 0.05; done; {REAL_SLEEP} 0.1"
        ),
        "apt-get": (
            f'echo "apt-get $*" >> {calls}; '
            f"for i in $(seq 100); do [ -e {marks}/npm ] && [ -e {marks}/make ] && exit 0; {REAL_SLEEP} 0.1; done; "
            'echo "E: npm ci and the checks did not start while apt-get ran" >&2; exit 100'
        ),
    }


@pytest.mark.requirement("SETUP-OVERLAP", "MAKE-TEST-LINTS")
def test_setup_on_a_fresh_machine_installs_both_packages_in_one_apt_call_while_npm_and_the_checks_run(
    tmp_path: Path,
) -> None:
    env, log, script = fake_machine(tmp_path, chromium=False, fakes=overlap_witness(tmp_path))
    done = run_setup(env, script, "--e2e", "--lint")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "setup: uv: present",
        "setup: Node MCP clients (e2e/node): installing them with npm ci, in the background",
        "setup: Python environment (.venv): in step with uv.lock",
        f"setup: {LINT_STEP}: running them in the background",
        f"setup: {BOTH_PACKAGES}: installing libzbar0 chromium with apt-get",
        f"setup: {BOTH_PACKAGES}: installed",
        "setup: Node MCP clients (e2e/node): installed",
        f"setup: {LINT_STEP}: passed",
    ]
    calls = log.read_text().splitlines()
    assert sorted(calls) == [
        "apt-get -o DPkg::Lock::Timeout=60 install -y -qq libzbar0 chromium",
        "make --no-print-directory lint-checks",
        "npm ci --prefix e2e/node --no-audit --no-fund --loglevel=error",
        "uv sync --locked --quiet",
    ]
    assert calls.index("uv sync --locked --quiet") < calls.index("make --no-print-directory lint-checks")  # needs .venv


@pytest.mark.requirement("SETUP-OVERLAP")
def test_setup_says_what_it_found_present_and_installs_nothing(tmp_path: Path) -> None:
    zbar = "echo '\tlibzbar.so.0 (libc6,x86-64) => /usr/lib/libzbar.so.0'"
    env, log, script = fake_machine(tmp_path, fakes={"ldconfig": zbar})
    node_modules = tmp_path / "repo" / "e2e" / "node" / "node_modules"
    node_modules.mkdir()
    (node_modules / ".package-lock.json").write_text("{}\n")
    os.utime(node_modules.parent / "package-lock.json", (time.time() - 60, time.time() - 60))
    done = run_setup(env, script, "--e2e")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "setup: uv: present",
        "setup: libzbar0 (QR decoding): present",
        "setup: chromium (the e2e browser): present",
        "setup: Node MCP clients (e2e/node): up to date",
        "setup: Python environment (.venv): in step with uv.lock",
    ]
    assert log.read_text().splitlines() == ["uv sync --locked --quiet"]


@pytest.mark.requirement("SETUP-OVERLAP", "MAKE-TEST-LINTS")
@pytest.mark.parametrize(
    ("failing", "step", "other"),
    [("npm", "Node MCP clients (e2e/node)", "make"), ("make", LINT_STEP, "npm")],
)
def test_a_background_step_that_fails_fails_the_setup_with_its_output_and_message(
    tmp_path: Path, failing: str, step: str, other: str
) -> None:
    # The failing step fails while apt-get still works; the other background step would run for 30 s more, in a
    # child process, and is stopped with that child when the set-up stops.
    other_child = tmp_path / "other-child.pid"
    apt_get = f'echo "apt-get $*" >> {tmp_path}/calls.log; {REAL_SLEEP} 0.3'
    fakes = {
        failing: once_there(other_child, f'echo "{failing}: could not do it" >&2; exit 3'),
        other: slow_step(other_child),
        "apt-get": apt_get,
    }
    env, _, script = fake_machine(tmp_path, chromium=False, fakes=fakes)
    started = time.monotonic()
    done = run_setup(env, script, "--e2e", "--lint")
    assert time.monotonic() - started < 20
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert lines[-2:] == [f"{failing}: could not do it", f"setup: {step}: failed (exit status 3); its output is above"]
    assert f"setup: {BOTH_PACKAGES}: installed" in lines
    assert not still_running(other_child)


@pytest.mark.requirement("SETUP-OVERLAP")
def test_a_failing_uv_sync_fails_the_setup_with_its_output_and_stops_npm_ci(tmp_path: Path) -> None:
    npm_child = tmp_path / "npm-child.pid"
    uv = once_there(npm_child, 'echo "error: uv.lock needs to be updated" >&2; exit 2')
    fakes = {"uv": uv, "npm": slow_step(npm_child)}
    env, log, script = fake_machine(tmp_path, chromium=False, fakes=fakes)
    done = run_setup(env, script, "--e2e", "--lint")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-2:] == [
        "error: uv.lock needs to be updated",
        "setup: Python environment (.venv): uv sync failed (exit status 2); its output is above",
    ]
    assert not log.exists()  # neither the checks nor apt-get started
    assert not still_running(npm_child)


@pytest.mark.requirement("SETUP-OVERLAP")
def test_setup_without_root_names_the_missing_packages_and_starts_nothing(tmp_path: Path) -> None:
    env, log, script = fake_machine(tmp_path, chromium=False, fakes={"id": "echo 1000"})
    done = run_setup(env, script, "--e2e", "--lint")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"setup: {BOTH_PACKAGES}: missing system package(s): libzbar0 chromium"
        "  — install them, e.g. 'sudo apt-get install libzbar0 chromium', then run this again"
    )
    assert not log.exists()


def make_environment(*leave_out: str) -> dict[str, str]:
    """This environment without the variables of a `make test` this suite may run under (a sub-make prints
    "Entering directory" lines) and without `leave_out`."""
    dropped = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", *leave_out}
    return {name: value for name, value in os.environ.items() if name not in dropped}


def make_dry_run(target: str) -> list[str]:
    command = ["make", "-n", "--no-print-directory", target]
    done = subprocess.run(
        command, cwd=REPO, env=make_environment(), capture_output=True, text=True, timeout=60, check=True
    )
    return [line.split(" run ", 1)[1] if " run " in line else line for line in done.stdout.splitlines()]


@pytest.mark.requirement("MAKE-TEST-LINTS")
def test_make_test_runs_everything_make_lint_runs_then_the_suite() -> None:
    # `make test`'s set-up runs `make lint-checks` (--lint; the set-up tests above check that it does, and that its
    # failure stops the set-up), which is `make lint` without the set-up; then the suite.
    lint = make_dry_run("lint")
    assert lint == [
        "./.ci/setup.sh",
        "ruff check .",
        "ruff format --check .",
        "mypy -p vouchsim.server -p vouchsim.companion -p e2e",
    ]
    assert make_dry_run("lint-checks") == lint[1:]
    assert make_dry_run("test") == ["./.ci/setup.sh --e2e --lint", "pytest"]


@pytest.mark.requirement("MAKE-BYTECODE-OUTSIDE-VENV")
def test_the_bytecode_cache_make_exports_is_outside_the_venv_uv_creates(tmp_path: Path) -> None:
    # Set-up's first Python run (pip installing uv) writes bytecode there before `uv sync` creates .venv.
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "show-prefix: ; @echo $$PYTHONPYCACHEPREFIX", "show-prefix"],
        cwd=REPO,
        env=make_environment("PYTHONPYCACHEPREFIX"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    prefix = Path(shown.stdout.strip())
    assert prefix == REPO / ".pycache"
    assert not prefix.is_relative_to(REPO / ".venv")
