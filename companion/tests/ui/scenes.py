"""Screens in a known state, for the snapshot tests and for docs/screenshots/make_screenshots.py.

Each scene is an app over the fake server (fixed key, frozen clock, fixed nonces where one is shown)
and a `prepare` coroutine that brings it to the state to capture. Nothing here depends on the machine:
no host name, no time zone, no random bytes on screen.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from textual.pilot import Pilot
from textual.widgets import Input, RichLog

from companion.tests.ui.fakes_ui import (
    CODE_TTL,
    KEY,
    SIZE,
    T0,
    TESTBED_TOKEN,
    FakeClock,
    FakeJournal,
    ManualSleep,
    TestbedTransport,
    UiFakeServer,
    enrol_device,
    fixed_bytes,
    make_app,
    settle,
)
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.core.decisions import sign_decision
from vouchsim.companion.core.schemas import Delegation, PairingApproval, PairingContext
from vouchsim.companion.demo.agent import AgentResult, CodeRequest, CodeSource, StepReporter
from vouchsim.companion.demo.app import DemoApp
from vouchsim.companion.messages import View
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.pairing import PairingConfirmScreen
from vouchsim.companion.screens.scan import ScanStatus
from vouchsim.companion.widgets.code_dock import ShownCode

Prepare = Callable[[Pilot[Any]], Awaitable[None]]


@dataclass
class Scene:
    app: CompanionApp
    prepare: Prepare
    server: UiFakeServer
    size: tuple[int, int] = SIZE


def _world(state_dir: Path, **options: Any) -> tuple[UiFakeServer, FakeClock, ManualSleep, dict[str, Any]]:
    clock = FakeClock()
    return UiFakeServer(clock=clock), clock, ManualSleep(), options


def _app(server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep, **options: Any) -> CompanionApp:
    return make_app(server, state_dir, clock=clock, sleep=sleep, **options)


async def _still_inputs(pilot: Pilot[Any]) -> None:
    """No blinking cursor in a capture: it would be there or not depending on timing."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


async def _home(pilot: Pilot[Any], view: View = "inbox") -> HomeScreen:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.link.state == "online")
    screen = app.screen
    assert isinstance(screen, HomeScreen)
    screen.action_show(view)
    await pilot.pause()
    return screen


def delegation_of(record: dict[str, Any]) -> Delegation:
    return msgspec.json.decode(json.dumps(UiFakeServer.public(record)), type=Delegation)


def _add_requests(server: UiFakeServer) -> None:
    server.add_delegation()
    server.add_delegation(
        client_name="Zed Research Agent",
        connection_id="conn_2",
        audience_id="aud_test_mail",
        audience_name="Test mail",
        scopes=["mail.read"],
        purpose="Summarise this morning's unread mail for the daily briefing.",
        binding_message="quiet-otter-7",
    )


def enrol(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _app(server, state_dir, clock, sleep, enrolled=False)

    async def prepare(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await _still_inputs(pilot)

    return Scene(app, prepare, server)


def inbox(state_dir: Path, *, dark: bool = True) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    _add_requests(server)
    app = _app(server, state_dir, clock, sleep, dark=dark)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot)
        await settle(pilot, lambda: len(screen.pending) == 2)
        await pilot.pause()

    return Scene(app, prepare, server)


def decision(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    _add_requests(server)
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot)
        await settle(pilot, lambda: len(screen.pending) == 2)
        delegation = delegation_of(server.delegation("dlg_1"))
        signed = sign_decision(KEY, delegation, "approve", random_bytes=fixed_bytes)
        enrolment = app.keystore.load_identity().enrolment
        await app.push_screen(DelegationConfirmScreen(delegation, signed, device=enrolment, clock=clock))
        await pilot.pause()

    return Scene(app, prepare, server)


CONTEXT = PairingContext(
    pairing_id="pair_1",
    status="claimed",
    client_id="vsc_1",
    client_name="Acme Agent Client",
    redirect_host="127.0.0.1",
    scopes=["identity", "delegation"],
    requested_at=datetime(2026, 11, 25, 15, 0, tzinfo=UTC),
    expires_at=datetime(2026, 11, 25, 15, 5, tzinfo=UTC),
    issuer="http://127.0.0.1:8741",
)


def pairing(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        await _home(pilot, "scan")
        await app.push_screen(PairingConfirmScreen(CONTEXT, pins=app.pins, clock=clock))
        app.show_next_step()
        await _still_inputs(pilot)

    return Scene(app, prepare, server)


APPROVAL = PairingApproval(
    pairing_id="pair_1",
    status="approved",
    pairing_code="bcdf ghjk",  # shown as BCDF-GHJK, whatever spacing the server used
    code_expires_at=datetime.fromtimestamp(T0 + CODE_TTL, UTC),
)


def pairing_code(state_dir: Path) -> Scene:
    """The code docked under the tabs (not a dialog): the person can read it while typing it elsewhere."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot, "scan")
        screen.scan_status = ScanStatus("done", "Approved Acme Agent Client: type the code it was given where it asks.")
        screen.code = ShownCode(APPROVAL, "Acme Agent Client", "vsc_1")
        app.show_next_step()
        await _still_inputs(pilot)  # the scan view's path field has the focus

    return Scene(app, prepare, server)


# --- the demo: the companion with the agent panel on its right (DemoApp, over the fake server) ------------------

DEMO_SIZE = (140, 40)
AGENT_STEPS = (
    "Agent: connecting to http://127.0.0.1:8741/mcp with the MCP Python SDK",
    "HTTP POST /mcp → 401: the server asks for a token (WWW-Authenticate names its metadata)",
    "HTTP GET /.well-known/oauth-protected-resource/mcp → 200: discovery: protected resource metadata (RFC 9728)",
    "HTTP GET /.well-known/oauth-authorization-server → 200: discovery: authorization server metadata (RFC 8414)",
    "HTTP POST /oauth/register → 201: dynamic client registration (RFC 7591)",
    "Browser: opening the authorization page (/oauth/authorize?response_type=code&client_id=vsc_1…)",
    "Browser: the pairing page shows a QR code and asks for the pairing code",
    "Browser: QR saved into the companion's camera folder (pairing-qr-5a1f2c.png)",
    "Browser: waiting for the pairing code the companion shows…",
)


async def scripted_agent(
    server_url: str, camera_dir: Path, *, pairing_code: CodeSource, on_step: StepReporter, protocol: str = "auto"
) -> AgentResult:
    """The agent, reduced to its browser waiting for the pairing code (the panel's lines are the scene's own)."""
    await pairing_code(CodeRequest())
    raise AssertionError("a scene never gets this far")


def _demo_app(
    server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep, journal: FakeJournal | None = None
) -> DemoApp:
    testbed: dict[str, Any] = {}
    if journal is not None:
        testbed = {"transport": TestbedTransport(server.transport, journal), "testbed_token": TESTBED_TOKEN}
    app = make_app(
        server,
        state_dir,
        clock=clock,
        sleep=sleep,
        kind=DemoApp,
        server_url=server.issuer,  # the companion's, and so the agent's
        camera_dir=state_dir.parent / "camera",
        auto=False,
        agent=scripted_agent,
        **testbed,
    )
    assert isinstance(app, DemoApp)
    return app


async def _demo_home(pilot: Pilot[Any], app: DemoApp) -> HomeScreen:
    """The demo's home screen with the agent waiting for the code, and the panel showing the scene's steps."""
    await settle(pilot, lambda: app.browser_waiting is not None and app.link.state == "online")
    home = app.home
    assert home is not None
    log = home.query_one("#agent-log", RichLog)
    log.clear()
    for step in AGENT_STEPS:
        log.write(step)
    await pilot.pause()
    return home


def demo(state_dir: Path) -> Scene:
    """The layout the README describes: the companion on the left, the agent on the right, the hint bar on top."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _demo_app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        await _demo_home(pilot, app)
        app.set_focus(None)
        await _still_inputs(pilot)

    return Scene(app, prepare, server, DEMO_SIZE)


def demo_pairing(state_dir: Path) -> Scene:
    """A dialog opens on the companion's side: the agent's log stays readable beside it."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _demo_app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        await _demo_home(pilot, app)
        await app.push_screen(PairingConfirmScreen(CONTEXT, pins=app.pins, clock=clock))
        app.show_next_step()
        await _still_inputs(pilot)

    return Scene(app, prepare, server, DEMO_SIZE)


def demo_code(state_dir: Path) -> Scene:
    """After the approval: the code docked on the left, the agent's field (focused) on the right, both in view."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _demo_app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        home = await _demo_home(pilot, app)
        home.code = ShownCode(APPROVAL, "Vouchsim demo agent", "vsc_1", where="the agent panel on the right")
        app.show_next_step()
        home.query_one("#agent-code", Input).focus()
        await _still_inputs(pilot)

    return Scene(app, prepare, server, DEMO_SIZE)


def scan_failed(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot, "scan")
        screen.scan_status = ScanStatus(
            "error",
            "This pairing QR belongs to https://elsewhere.example, but this companion is enrolled with "
            "http://127.0.0.1:8741.",
        )
        screen.query_one("#scan-input", Input).value = "~/Pictures/other-server-qr.png"
        await _still_inputs(pilot)

    return Scene(app, prepare, server)


def connections(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    enrol_device(server, state_dir)
    server.add_connection("dev_1", "Acme Agent Client")["revoked_at"] = "2026-11-25T15:00:50Z"
    used = server.add_connection("dev_1", "Zed Research Agent")
    used["last_used_at"] = "2026-11-25T15:00:40Z"
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot, "connections")
        await settle(pilot, lambda: len(screen.connections) == 2)
        await pilot.pause()

    return Scene(app, prepare, server)


def history(state_dir: Path) -> Scene:
    clock = FakeClock(T0 - 600)
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    server.add_delegation()["status"] = "expired"
    approved = server.add_delegation(client_name="Zed Research Agent", binding_message="quiet-otter-7")
    approved.update(status="approved", decided_at="2026-11-25T14:52:10Z", decided_by="dev_1")
    denied = server.add_delegation(scopes=["payments.send"], binding_message="loud-heron-3")
    denied.update(status="denied", decided_at="2026-11-25T14:53:00Z", decided_by="dev_1")
    clock.now = T0
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        screen = await _home(pilot, "history")
        await settle(pilot, lambda: len(screen.history) == 3)
        await pilot.pause()

    return Scene(app, prepare, server)


def offline(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    server.stream_connects = [httpx.ConnectError("Connection refused")]
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: app.link.state == "offline")
        await pilot.pause()

    return Scene(app, prepare, server)


def timeline(state_dir: Path) -> Scene:
    """The Timeline tab: the flow's steps from the server's journal, a colour per kind, a refused refresh in red
    with the fault that answered it."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    journal = FakeJournal()
    journal.the_flow()
    transport = TestbedTransport(server.transport, journal)
    app = _app(server, state_dir, clock, sleep, transport=transport, testbed_token=TESTBED_TOKEN)

    async def prepare(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: app.home is not None and app.home.timeline_ready)
        screen = await _home(pilot, "timeline")
        await settle(pilot, lambda: len(screen.timeline) == len(app.timeline) > 0)
        await pilot.pause()

    return Scene(app, prepare, server)


def demo_timeline(state_dir: Path) -> Scene:
    """The demo as it runs (the README's picture): the code docked on the left, the agent's field focused on the
    right, and under the agent's log the Timeline of the flow so far, up to the companion's approval."""
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    journal = FakeJournal()
    journal.the_flow(steps=8)
    app = _demo_app(server, state_dir, clock, sleep, journal)

    async def prepare(pilot: Pilot[Any]) -> None:
        home = await _demo_home(pilot, app)
        await settle(pilot, lambda: len(app.timeline) == 7)  # the eight, less the device's poll
        home.code = ShownCode(APPROVAL, "Vouchsim demo agent", "vsc_1", where="the agent panel on the right")
        app.show_next_step()
        home.query_one("#agent-code", Input).focus()
        await _still_inputs(pilot)

    return Scene(app, prepare, server, DEMO_SIZE)


def help_screen(state_dir: Path) -> Scene:
    clock = FakeClock()
    server, sleep = UiFakeServer(clock=clock), ManualSleep()
    app = _app(server, state_dir, clock, sleep)

    async def prepare(pilot: Pilot[Any]) -> None:
        await _home(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    return Scene(app, prepare, server)


SCENES: dict[str, Callable[[Path], Scene]] = {
    "enrol": enrol,
    "inbox": inbox,
    "inbox-light": lambda state_dir: inbox(state_dir, dark=False),
    "decision": decision,
    "pairing": pairing,
    "pairing-code": pairing_code,
    "demo": demo,
    "demo-pairing": demo_pairing,
    "demo-code": demo_code,
    "scan-failed": scan_failed,
    "connections": connections,
    "history": history,
    "offline": offline,
    "help": help_screen,
    "timeline": timeline,
    "demo-timeline": demo_timeline,
}
__all__ = ["DEMO_SIZE", "SCENES", "SIZE", "Scene"]
