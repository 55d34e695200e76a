"""The one-terminal demo (`vouchsim companion demo --auto`), run as a person would start it, headless: it
must finish by itself, show the delegation token's claims, and leave no server behind."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from e2e.harness import REPO, clean_environment
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.demo.app import DEMO_PIN, DemoApp, enrol_demo_device
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.pairing import PairingCodeScreen, PairingConfirmScreen
from vouchsim.companion.server_process import ServerProcess
from vouchsim.companion.widgets.delegation_card import DelegationCard

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT = 90.0
S = TypeVar("S", bound=Screen[object])
SERVER_LINE = re.compile(r"starting the server on http://127\.0\.0\.1:(\d+)")


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.requirement("DEMO-AUTO")
def test_demo_runs_the_whole_story_by_itself_and_leaves_no_server_behind() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vouchsim.companion", "demo", "--auto", "--headless"],
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
        "Agent: identity_get → subject",
        "Agent: the delegation is approved",
        '    aud: "aud_test_payments"',
        '    scope: "payments.identity payments.prepare"',
        "Agent: signature and issuer verified",
    ):
        assert any(line.startswith(expected) for line in steps), f"missing {expected!r} in:\n{output}"
    found = SERVER_LINE.search(done.stdout)
    assert found, output
    assert not port_is_open(int(found.group(1))), "the demo's server is still listening"
    assert "is stopped." in done.stdout


@pytest.mark.requirement("DEMO-MANUAL")
@pytest.mark.anyio
async def test_the_person_types_the_code_and_approves_on_the_companion(tmp_path: Path) -> None:
    """Manual mode, driven with Textual's Pilot: the QR reaches the camera by itself, the person confirms
    with the demo PIN, types the code into the agent panel, and approves the delegation with `a`."""
    server = ServerProcess(tmp_path)
    await anyio.to_thread.run_sync(server.start)
    try:
        await enrol_demo_device(tmp_path / "companion", server.base_url)
        config = CompanionConfig(state_dir=tmp_path / "companion", server_url=server.base_url)
        app = DemoApp(config, server_url=server.base_url, camera_dir=tmp_path / "camera", auto=False)
        async with app.run_test(size=(180, 50)) as pilot:
            confirm = await screen_of(pilot, PairingConfirmScreen)
            confirm.query_one("#pin", Input).value = DEMO_PIN
            await pilot.click("#approve")
            code = (await screen_of(pilot, PairingCodeScreen)).approval.pairing_code
            await pilot.press("enter")  # Done
            home = app.home
            assert home is not None
            field = home.query_one("#agent-code", Input)
            await until(pilot, lambda: not field.disabled and pilot.app.screen is home)
            field.focus()
            await pilot.press(*code, "enter")
            await until(pilot, lambda: bool(home.pending) and bool(home.query(DelegationCard)))
            home.query_one(DelegationCard).focus()
            await pilot.press("a")
            await screen_of(pilot, DelegationConfirmScreen)
            await pilot.click("#confirm")
            await until(pilot, lambda: app.result is not None or app.failure is not None, within=60)
            assert app.failure is None, app.transcript
            assert app.result is not None and app.result.claims is not None
            assert app.result.claims["aud"] == "aud_test_payments"
            log = "\n".join(app.transcript)
            assert f"typing the pairing code {code}" in log
    finally:
        await anyio.to_thread.run_sync(server.stop)
    assert not port_is_open(server.port)


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
