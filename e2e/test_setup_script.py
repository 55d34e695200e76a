"""`.ci/setup.sh` (what `make demo` and `make test` run first) on a machine where another apt holds the dpkg lock:
it waits for the lock, saying so, instead of failing at once, and prints one line per step. Run as bash runs it,
with `apt-get`, `fuser`, `ldconfig`, `id`, `uv` and `sleep` stood in for by scripts that record what they were
asked (installing packages for real is not what this test is for)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from e2e.harness import REPO

pytestmark = pytest.mark.e2e

SETUP = REPO / ".ci" / "setup.sh"


def fake_machine(tmp_path: Path, *, locked_checks: int) -> tuple[dict[str, str], Path]:
    """A PATH whose `fuser` reports the dpkg lock held for the first `locked_checks` looks; the log of calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    counter = tmp_path / "fuser-calls"
    scripts = {
        "id": "echo 0",
        "ldconfig": "exit 0",  # no libzbar on this machine
        "sleep": f'echo "sleep $*" >> {log}',
        "uv": f'echo "uv $*" >> {log}',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "fuser": (
            f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}; [ "$n" -lt {locked_checks} ]'
        ),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path), "VOUCHSIM_SETUP_LOCK_WAIT": "60"}
    return env, log


@pytest.mark.requirement("SETUP-DPKG-LOCK")
def test_setup_waits_for_the_dpkg_lock_saying_so_then_installs(tmp_path: Path) -> None:
    env, log = fake_machine(tmp_path, locked_checks=3)
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "setup: uv: present",
        "setup: libzbar0 (QR decoding): installing libzbar0 with apt-get",
        "setup: another package manager (apt, unattended-upgrades?) holds the dpkg lock; waiting for it (0s of 60s)",
        "setup: libzbar0 (QR decoding): installed",
        "setup: Python environment (.venv): in step with uv.lock",
    ]
    calls = log.read_text().splitlines()
    assert calls == [
        "sleep 1",
        "sleep 1",
        "sleep 1",
        "apt-get -o DPkg::Lock::Timeout=60 install -y -qq libzbar0",
        "uv sync --locked --quiet",
    ]


@pytest.mark.requirement("SETUP-DPKG-LOCK")
def test_setup_gives_up_on_a_lock_that_is_never_released_with_one_clear_line(tmp_path: Path) -> None:
    env, log = fake_machine(tmp_path, locked_checks=10_000)
    env["VOUCHSIM_SETUP_LOCK_WAIT"] = "20"
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60, check=False)
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


def make_dry_run(target: str) -> list[str]:
    done = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return [line.split(" run ", 1)[1] for line in done.stdout.splitlines() if " run " in line]


@pytest.mark.requirement("MAKE-TEST-LINTS")
def test_make_test_runs_everything_make_lint_runs_then_the_suite() -> None:
    lint = make_dry_run("lint")
    assert lint == [
        "ruff check .",
        "ruff format --check .",
        "mypy -p vouchsim.server -p vouchsim.companion -p e2e",
    ]
    assert make_dry_run("test") == [*lint, "pytest"]


@pytest.mark.requirement("MAKE-BYTECODE-OUTSIDE-VENV")
def test_the_bytecode_cache_make_exports_is_outside_the_venv_uv_creates(tmp_path: Path) -> None:
    # Set-up's first Python run (pip installing uv) writes bytecode there before `uv sync` creates .venv.
    shown = subprocess.run(
        ["make", "-s", "--eval", "show-prefix: ; @echo $$PYTHONPYCACHEPREFIX", "show-prefix"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    prefix = Path(shown.stdout.strip())
    assert prefix == REPO / ".pycache"
    assert not prefix.is_relative_to(REPO / ".venv")
