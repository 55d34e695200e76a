"""The one-terminal demo (`vouchsim companion demo --auto`), run as a person would start it, headless: it
must finish by itself, show the delegation token's claims, and leave no server behind."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static

from e2e.harness import REPO, clean_environment
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.demo.app import DEMO_PIN, DemoApp, enrol_demo_device
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.pairing import PairingConfirmScreen
from vouchsim.companion.server_process import ServerProcess
from vouchsim.companion.widgets.code_dock import PairingCodeDock

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT = 90.0
S = TypeVar("S", bound=Screen[Any])
TIMELINE_LINE = re.compile(r"^ *\d+  \d\d:\d\d:\d\d\.\d{3}  [a-z]+ ")
SERVER_LINE = re.compile(r"starting the server on http://127\.0\.0\.1:(\d+)")


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("options", "negotiated"),
    [
        pytest.param((), "Agent: connected; protocol 2026-07-28 (stateless", id="default"),
        pytest.param(
            ("--protocol", "legacy"),
            "Agent: connected; protocol 2025-11-25 (initialize handshake",
            id="legacy",
            marks=pytest.mark.requirement("DEMO-PROTOCOL"),
        ),
    ],
)
@pytest.mark.requirement("DEMO-AUTO", "DEMO-PROTOCOL", "DEMO-TIMELINE")
def test_demo_runs_the_whole_story_by_itself_and_leaves_no_server_behind(
    options: tuple[str, ...], negotiated: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vouchsim.companion", "demo", "--auto", "--headless", *options],
        cwd=REPO,
        env=clean_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    steps = done.stdout.splitlines()
    for expected in (
        "HTTP POST /oauth/register → 201",  # discovery and registration by the SDK
        "Browser: QR saved into the companion's camera folder",
        negotiated,  # the SDK's negotiation, shown
        "Agent: identity_get → subject",
        "Agent: the delegation is approved",
        '    aud: "aud_test_payments"',
        '    scope: "payments.identity payments.prepare"',
        "Agent: signature and issuer verified",
    ):
        assert any(line.startswith(expected) for line in steps), f"missing {expected!r} in:\n{output}"
    # The Timeline the agent panel showed, printed after the TUI: the flow's steps in order, from the journal.
    timeline = steps[steps.index("Timeline (the server's testbed journal):") + 1 :]
    kinds = [line.split()[2] for line in timeline if TIMELINE_LINE.match(line)]
    firsts = [kind for at, kind in enumerate(kinds) if kind not in kinds[:at]]
    assert [k for k in firsts if k != "device"][:6] == ["mcp", "discovery", "register", "authorize", "pairing", "token"]
    assert re.search(r" mcp +POST /mcp +200 .* name=delegation_request", "\n".join(timeline)), timeline
    assert not re.search(r"vs(at|rt)_", "\n".join(timeline)), timeline  # no access or refresh token
    found = SERVER_LINE.search(done.stdout)
    assert found, output
    assert not port_is_open(int(found.group(1))), "the demo's server is still listening"
    assert "is stopped." in done.stdout


@pytest.mark.requirement("DEMO-MANUAL")
@pytest.mark.anyio
async def test_a_newcomer_declines_once_then_pairs_types_the_code_in_view_and_approves_with_a(
    tmp_path: Path,
) -> None:
    """The story as a newcomer played it, driven with Textual's Pilot against a real server and the real agent:
    the first pairing is declined (Esc); a code typed afterwards shows the page's real reason (access_denied) and the
    story goes on; `n` starts a new pairing; the PIN is typed right after the prompt; the code, docked and in view,
    is typed into the agent's field (which has the focus); `a` in the Inbox, with no Tab, then Enter signs."""
    server = ServerProcess(tmp_path)
    await anyio.to_thread.run_sync(server.start)
    try:
        await enrol_demo_device(tmp_path / "companion", server.base_url)
        config = CompanionConfig(state_dir=tmp_path / "companion", server_url=server.base_url)
        app = DemoApp(config, camera_dir=tmp_path / "camera", auto=False)
        async with app.run_test(size=(140, 40)) as pilot:
            first = await screen_of(pilot, PairingConfirmScreen)
            assert first.focused is first.query_one("#pin", Input)  # typed digits land in the PIN field
            await pilot.press("escape")  # decline
            home = app.home
            assert home is not None
            await until(pilot, lambda: bool(app.pairing_problem) and app.browser_waiting is not None)
            assert home.scan_status.kind == "error" and home.scan_status.text.startswith("Declined")  # red
            assert home.hint.kind == "problem" and "Press n for a new pairing" in home.hint.text

            field = home.query_one("#agent-code", Input)
            await pilot.click("#agent-code")
            await pilot.press(*"BCDF-GHJK", "enter")  # a code after the decline: the page's answer, not a crash
            await until(pilot, lambda: app.browser_waiting is not None and app.browser_waiting.closed)
            assert app.outcome is None and app.failure is None  # recoverable
            assert "access_denied" in home.hint.text and "Press n" in home.hint.text, home.hint
            assert any("with access_denied" in line for line in app.transcript), app.transcript
            assert field.disabled  # the page takes no more codes: `n` is a key, not a letter

            await pilot.press("n")  # a new pairing: the browser opens the page again, a new QR reaches the camera
            second = await screen_of(pilot, PairingConfirmScreen)
            assert second is not first
            await pilot.press(*DEMO_PIN, "enter")  # right after the prompt, no Tab

            await until(pilot, lambda: home.code is not None and field.has_focus)
            dock = home.query_one(PairingCodeDock)
            assert dock.display and dock.region.height > 0 and not dock.region.overlaps(field.region)
            code = str(home.query_one("#code-text", Static).visual)
            assert "Type the code" in home.hint.text and code in home.hint.text
            await pilot.press(*code, "enter")  # typed while the code is still on screen

            await until(pilot, lambda: bool(home.pending) and home.code is None)  # the code was used: undocked
            assert app.screen is home and home.view == "inbox"
            await pilot.press("a")  # from the Inbox, no Tab: the newest request
            await screen_of(pilot, DelegationConfirmScreen)
            await pilot.press("enter")  # the signing dialog's focus is on "Sign and approve"
            await until(pilot, lambda: app.outcome is not None, within=60)
            assert app.failure is None, app.transcript
            assert app.result is not None and app.result.claims is not None
            assert app.result.claims["aud"] == "aud_test_payments"
            assert f"typing the pairing code {code}" in "\n".join(app.transcript)
            await pilot.press("q")
        assert app.return_code == 0
    finally:
        await anyio.to_thread.run_sync(server.stop)
    assert not port_is_open(server.port)


@pytest.mark.requirement("DEMO-MANUAL")
@pytest.mark.anyio
async def test_quitting_after_a_failed_pairing_exits_1_with_the_real_reason(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    await anyio.to_thread.run_sync(server.start)
    try:
        await enrol_demo_device(tmp_path / "companion", server.base_url)
        config = CompanionConfig(state_dir=tmp_path / "companion", server_url=server.base_url)
        app = DemoApp(config, camera_dir=tmp_path / "camera", auto=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await screen_of(pilot, PairingConfirmScreen)
            await pilot.press("escape")
            await pilot.click("#agent-code")
            await pilot.press(*"BCDF-GHJK", "enter")
            await until(pilot, lambda: app.browser_waiting is not None and app.browser_waiting.closed)
            await pilot.press("q")
        assert app.return_code == 1
        assert app.failure is not None and "access_denied" in app.failure, app.failure
        assert "TaskGroup" not in app.failure
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def until(pilot: Pilot[None], condition: Callable[[], bool], *, within: float = 30.0) -> None:
    with anyio.fail_after(within):
        while not condition():
            await pilot.pause(0.05)


async def screen_of(pilot: Pilot[None], kind: type[S]) -> S:
    await until(pilot, lambda: isinstance(pilot.app.screen, kind))
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    return screen
