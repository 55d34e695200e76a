"""`vouchsim sidecar` as a CI step runs it, beyond the README's recipe (e2e/test_readme_recipes.py): Ctrl-C stops it
and its server, a state directory is reused (and re-enrolled when the server forgot its device), a server that dies
takes the side-car down with status 1, and a broken rules file stops it before anything starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from e2e.harness import HTTP_TIMEOUT, clean_environment

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
RULES = 'default = "deny"\n[[rule]]\naudience = ["aud_test_*"]\ndecision = "approve"\n'


@contextmanager
def sidecar(state: Path, rules: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """The side-car, started as a CI step would (`python -m vouchsim.companion.sidecar`, what `vouchsim sidecar`
    runs), and its ready lines: its stdout, read to its end, which comes once it is ready."""
    command = [sys.executable, "-m", "vouchsim.companion.sidecar", "--rules", str(rules), "--state", str(state)]
    with (state.parent / f"{state.name}.log").open("a") as log:
        process = subprocess.Popen(
            command, env=clean_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        assert process.stdout is not None
        with process.stdout:
            lines = process.stdout.read().splitlines()  # returns once the side-car closes its stdout: ready, or failed
        yield process, dict(line.split("=", 1) for line in lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(STOP_TIMEOUT)


def log_of(state: Path) -> str:
    return (state.parent / f"{state.name}.log").read_text()


def port_of(server_url: str) -> int:
    return int(server_url.rsplit(":", 1)[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


@pytest.mark.requirement("CI-SIDECAR")
def test_ctrl_c_stops_it_and_its_server_and_its_state_is_reused(tmp_path: Path, rules: Path) -> None:
    state = tmp_path / "vouchsim"
    with sidecar(state, rules) as (process, ready):
        assert list(ready) == [
            "VOUCHSIM_SERVER_URL",
            "VOUCHSIM_MCP_URL",
            "VOUCHSIM_COMPANION_STATE",
            "VOUCHSIM_SIDECAR_PID",
        ]
        assert ready["VOUCHSIM_SIDECAR_PID"] == str(process.pid)
        assert httpx.get(f"{ready['VOUCHSIM_SERVER_URL']}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(STOP_TIMEOUT) == 130
    assert not listening(port_of(ready["VOUCHSIM_SERVER_URL"]))
    first = log_of(state)
    enrolled = re.search(r"enrolled device (dev_\S+)", first)
    assert enrolled, first
    assert "vouchsim sidecar: interrupted" in first

    with sidecar(state, rules) as (process, again):  # the same state directory: the same database and device
        assert again["VOUCHSIM_COMPANION_STATE"] == ready["VOUCHSIM_COMPANION_STATE"]
    assert f"device {enrolled.group(1)} (" in log_of(state) and "is enrolled" in log_of(state)

    (state / "server" / "vouchsim.db").unlink()  # a fresh database forgets the device: it is enrolled again
    with sidecar(state, rules):
        pass
    assert "enrolling a new key" in log_of(state), log_of(state)


@pytest.mark.requirement("CI-SIDECAR")
def test_a_server_that_dies_stops_the_sidecar_with_status_1(tmp_path: Path, rules: Path) -> None:
    state = tmp_path / "vouchsim"
    with sidecar(state, rules) as (process, ready):
        server_log = (state / "server" / "server.log").read_text()
        started = re.search(r"Started server process \[(\d+)\]", server_log)
        assert started, server_log
        os.kill(int(started.group(1)), signal.SIGKILL)
        assert process.wait(STOP_TIMEOUT) == 1
    assert "The server exited with status -9; see its log." in log_of(state), log_of(state)
    assert not listening(port_of(ready["VOUCHSIM_SERVER_URL"]))


@pytest.mark.requirement("CI-SIDECAR")
def test_a_broken_rules_file_stops_it_before_anything_starts(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('default = "maybe"\n')
    state = tmp_path / "vouchsim"
    started = time.monotonic()
    with sidecar(state, rules) as (process, ready):
        assert ready == {}
        assert process.wait(STOP_TIMEOUT) == 1
    assert time.monotonic() - started < STOP_TIMEOUT
    lines = log_of(state).splitlines()
    assert lines == [
        f"vouchsim sidecar: {rules}: default must be one of 'ask', 'deny', 'leave', not 'maybe'. See "
        "docs/companion-rules.md for the format."
    ]
    assert not (state / "server").exists()
