"""The README's recipe for CI in other languages ("Vouchsim in your CI" → "Other languages"), run as written.

The GitHub Actions excerpt's side-car step runs in bash (as a runner would: `bash -e`), from a workspace where
Vouchsim is checked out at `vouchsim/`, with `RUNNER_TEMP` and a `GITHUB_ENV` file: `vouchsim sidecar` starts the
server, enrols a device and runs the rules watcher, and the step returns once the side-car's ready lines are in
`GITHUB_ENV`. The "SDK test" runs, as the next step would, with those lines in its environment: the TypeScript SDK
agent of e2e/node/ts_sdk_client.mjs in `--vouchsim-person` mode, given `VOUCHSIM_MCP_URL`, whose redirect handler is
the README's JavaScript lines (checked word for word): it completes the authorization page through `vouchsim
companion authorize-url` (which finds the side-car's device through `VOUCHSIM_COMPANION_STATE`), and its
delegation_request is approved by the rules file, with nobody in the loop. Then the side-car gets SIGTERM, as a
job's clean-up would send it, and must take its server with it.

The installation step's `pip install ./vouchsim` runs too, with uv (`uv pip install`, the same install, from
uv's cache) into a fresh virtual environment: the side-cars run the installed wheel, not this checkout. Its
`apt-get install libzbar0` is the set-up's own (`.ci/setup.sh`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from e2e.harness import HTTP_TIMEOUT, REPO, TRACEBACK, clean_environment, free_port
from e2e.node_clients import NODE_PROJECT, installed_package, json_lines_process, node_executable
from e2e.test_delegation_flow import PAYMENTS

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

README = REPO / "README.md"
INSTALL = "pip install ./vouchsim"
SIDE_CAR_STEP = "Vouchsim side-car"
SDK_STEP = "SDK tests against the real flow"
STEP_TIMEOUT = 90.0  # seconds for the side-car step: the server's start-up (its own limit is 30 s) and enrolment
AGENT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
INSTALL_TIMEOUT = 300.0  # a wheel build and ~60 packages from uv's cache: seconds, unless the cache is cold


def readme_section(heading: str) -> str:
    """The README from `heading` to the next heading of any level (outside code blocks, where `#` is a comment)."""
    lines = README.read_text("utf-8").splitlines(keepends=True)
    start = lines.index(f"{heading}\n")
    in_fence = False
    for at in range(start + 1, len(lines)):
        in_fence ^= lines[at].startswith("```")
        if not in_fence and lines[at].startswith("#"):
            return "".join(lines[start:at])
    return "".join(lines[start:])


def fenced_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


def workflow_job(section: str) -> dict[str, Any]:
    [block] = fenced_blocks(section, "yaml")
    [job] = yaml.safe_load(block)["jobs"].values()
    assert isinstance(job, dict)
    return job


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    found = [candidate for candidate in job["steps"] if str(candidate.get("name", "")).startswith(name)]
    assert len(found) == 1, f"the README's workflow has no single step named {name!r}"
    only: dict[str, Any] = found[0]
    return only


def install_vouchsim(job: dict[str, Any], workspace: Path, venv: Path) -> Path:
    """The excerpt's `pip install ./vouchsim`, into a fresh virtual environment; returns its bin directory."""
    [install] = [candidate["run"] for candidate in job["steps"] if INSTALL in str(candidate.get("run", ""))]
    assert install.endswith(INSTALL), install  # what follows the apt-get part, which the set-up did
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("this test installs the wheel with uv: run it with `uv run pytest` (or `make test`)")
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "./vouchsim"],
    ):
        done = subprocess.run(
            command, cwd=workspace, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return venv / "bin"


@contextmanager
def side_cars(script: str, workspace: Path, env: dict[str, str]) -> Iterator[subprocess.CompletedProcess[str]]:
    """Run the step's script in its own process group (what it starts in the background stays in that group),
    and stop the whole group on the way out."""
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=workspace,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            output, _ = process.communicate(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the README's side-car step did not finish within {STEP_TIMEOUT} s", pytrace=False)
        yield subprocess.CompletedProcess(process.args, process.returncode, output)
    finally:
        stop_group(process.pid)


def stop_group(pgid: int) -> None:
    """SIGTERM the process group, give it STOP_TIMEOUT seconds to go, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)  # bounded by STOP_TIMEOUT


@pytest.mark.requirement("README-CI-RECIPE")
def test_the_readme_redirect_handler_is_the_one_the_agent_runs() -> None:
    """The JavaScript lines in the README and in e2e/node/ts_sdk_client.mjs are the same lines."""
    [snippet] = fenced_blocks(readme_section("### Other languages"), "js")
    script = (NODE_PROJECT / "ts_sdk_client.mjs").read_text("utf-8")
    lines = [line.strip() for line in snippet.strip().splitlines()]
    assert lines and all(lines)
    script_lines = [line.strip() for line in script.splitlines()]
    at = script_lines.index(lines[0])
    assert script_lines[at : at + len(lines)] == lines


@pytest.mark.requirement("README-CI-RECIPE", "CI-SIDECAR", "TS-SDK-OAUTH-CLIENT", "DELEGATION-APPROVE")
async def test_the_readme_ci_recipe_runs_a_typescript_sdk_agent_through_the_real_flow(tmp_path: Path) -> None:
    node = node_executable()
    installed_package("@modelcontextprotocol/sdk")
    job = workflow_job(readme_section("### Other languages"))
    workspace, runner_temp = tmp_path / "workspace", tmp_path / "runner-temp"
    workspace.mkdir()
    runner_temp.mkdir()
    (workspace / "vouchsim").symlink_to(REPO)  # the second checkout of the excerpt, `path: vouchsim`
    github_env = runner_temp / "github-env"
    github_env.touch()

    # The runner's PATH, with the `vouchsim` command that `pip install ./vouchsim` put on it.
    installed = install_vouchsim(job, workspace, tmp_path / "runner-venv")
    assert (installed / "vouchsim").is_file()
    env = clean_environment({"RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(github_env)})
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"

    script = step(job, SIDE_CAR_STEP)["run"]
    with side_cars(script, workspace, env) as done:
        assert done.returncode == 0, f"the README's side-car step failed ({done.returncode}):\n{done.stdout}"
        ready = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
        assert set(ready) == {
            "VOUCHSIM_SERVER_URL",
            "VOUCHSIM_MCP_URL",
            "VOUCHSIM_COMPANION_STATE",
            "VOUCHSIM_SIDECAR_PID",
        }
        assert done.stdout.splitlines() == github_env.read_text().splitlines()  # `tee` shows them in the step's log
        server_url, mcp_url = ready["VOUCHSIM_SERVER_URL"], ready["VOUCHSIM_MCP_URL"]
        assert mcp_url == f"{server_url}/mcp"
        assert ready["VOUCHSIM_COMPANION_STATE"] == str(runner_temp / "vouchsim" / "device")
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            assert (await http.get(f"{server_url}/healthz")).status_code == 200

        step(job, SDK_STEP)  # the next step: the job's env plus $GITHUB_ENV's lines, as the runner gives it
        agent_env = {**env, **ready}
        delegation = {**PAYMENTS, "timeoutSeconds": 20}
        command: list[str | Path] = [
            *(node, NODE_PROJECT / "ts_sdk_client.mjs", "--server", mcp_url),
            *("--redirect-url", f"http://127.0.0.1:{free_port()}/callback", "--vouchsim-person"),
            *("--delegation", json.dumps(delegation), "--timeout", str(AGENT_TIMEOUT)),
        ]
        with anyio.fail_after(AGENT_TIMEOUT + 10):
            async with json_lines_process("ts_sdk_client", command, agent_env, tmp_path) as agent:
                redirected = await agent.expect("redirected", AGENT_TIMEOUT)
                result = await agent.expect("delegation", AGENT_TIMEOUT)
                await agent.expect("done", AGENT_TIMEOUT)
                assert await agent.exit_code(AGENT_TIMEOUT) == 0, agent.report()

        # A job's clean-up: SIGTERM to the side-car alone; it stops its watcher and its server.
        pid = int(ready["VOUCHSIM_SIDECAR_PID"])
        os.kill(pid, signal.SIGTERM)
        assert wait_for_exit(pid, STOP_TIMEOUT), "the side-car did not stop on SIGTERM"
        port = int(server_url.rsplit(":", 1)[1])
        assert not port_in_use(port), "the side-car's server outlived it"

    location = redirected["location"]
    assert location.startswith("http://127.0.0.1:") and "code=" in location and "iss=" in location, location
    [identity] = agent.of_type("identity")
    assert identity["result"]["structuredContent"]["issuer"] == server_url
    answer = result["result"]["structuredContent"]
    assert answer["status"] == "approved" and answer["token"], answer

    # The side-car's stderr, as the excerpt redirects it: the watcher approved by the rules file, and it stopped
    # everything on SIGTERM; its server logged no traceback.
    sidecar_log = (workspace / "vouchsim.log").read_text()
    assert re.search(rf"approved {answer['delegationId']} aud_test_payments .*\(rule 1\)", sidecar_log), sidecar_log
    assert "vouchsim sidecar: stopping on SIGTERM" in sidecar_log, sidecar_log
    assert f"vouchsim sidecar: the server on {server_url} is stopped" in sidecar_log, sidecar_log
    server_log = (runner_temp / "vouchsim" / "server" / "server.log").read_text()
    assert TRACEBACK not in server_log, server_log


def wait_for_exit(pid: int, within: float) -> bool:
    """Whether process `pid` (not our child: bash started it) is gone within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)  # bounded by `within`
    return False


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
