"""The fork server's children (e2e/forked.py) are what a new interpreter running `python -m MODULE ARGS` would be:
the same arguments, working directory, environment, `sys.path`, standard streams and exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import forked
from e2e.harness import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def new_interpreter(how: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "e2e.forked_probe", how],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def forked_child(how: str, env: dict[str, str], cwd: Path, tmp_path: Path) -> tuple[int, str, str]:
    stdout, stderr = tmp_path / "out", tmp_path / "err"
    process = forked.start("e2e.forked_probe", [how], env=env, cwd=cwd, stdout=stdout, stderr=stderr, safe_path=False)
    returncode = await forked.wait(process)
    return returncode, stdout.read_text(), stderr.read_text()


@pytest.mark.requirement("E2E-FORKED-PROCESSES")
@pytest.mark.parametrize("how", ["0", "3", "SIGTERM"])
async def test_a_forked_child_sees_and_ends_as_a_new_interpreter_would(how: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PROBE_NAME": "value", "PYTHONUNBUFFERED": "1"}
    expected = new_interpreter(how, env, REPO)
    got = await forked_child(how, env, REPO, tmp_path)
    assert got == expected
    assert got[0] == {"0": 0, "3": 3, "SIGTERM": -15}[how]
    seen = json.loads(got[1])
    assert seen["cwd"] == str(REPO) and seen["env"] == {"PROBE_NAME": "value"} and seen["stdin"] == ""


@pytest.mark.requirement("E2E-FORKED-PROCESSES")
async def test_a_forked_child_takes_pythonpath_from_its_own_environment(tmp_path: Path) -> None:
    """The fork server's `sys.path` came from the suite's environment; a child's comes from the one it is given."""
    extra = tmp_path / "extra"
    extra.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(extra)}
    expected = new_interpreter("0", env, REPO)
    got = await forked_child("0", env, REPO, tmp_path)
    assert got == expected
    assert str(extra) in json.loads(got[1])["path"]
