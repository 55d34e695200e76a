"""The demo's TUI: the companion, as a person uses it, with the scripted agent's panel beside it.

`DemoApp` is the companion app (`CompanionApp`) with three additions: the home screen gets an agent panel
(the agent's steps, and in manual mode a field where the person types the pairing code, as into the
browser), the scan tab's watched-folder camera is pointed at the folder the agent's browser saves the QR
into, and the agent runs as a worker once the home screen is up. The device is enrolled before the app
starts (`run_demo`), with a known PIN shown on screen, so the demo opens straight on the home screen.

In `--auto`, an autopilot presses through what the person would: the pairing confirmation with the
demo PIN, the pairing code (handed to the agent instead of typed), the approval of the delegation and
its signing. The app then exits 0 once the agent has shown the token's claims, and 1 with the reason
when something fails or the demo does not finish in time.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import httpx
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, Input, RadioButton, RadioSet, RichLog, Static
from textual.worker import Worker

from vouchsim.companion.app import CompanionApp
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.core.keystore import Enrolment, Keystore
from vouchsim.companion.core.pin import PinStore
from vouchsim.companion.core.text import clean
from vouchsim.companion.demo.agent import AgentResult, run_agent
from vouchsim.companion.messages import DecisionChosen
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.pairing import PairingCodeScreen, PairingConfirmScreen
from vouchsim.companion.screens.scan import PLACEHOLDERS, ScanView
from vouchsim.companion.server_process import ServerProcess, ServerStartError, exit_on_termination

DEMO_PIN: Final = "0000"
DEVICE_NAME: Final = "Vouchsim demo phone"
AUTO_PACE: Final = 0.6  # seconds a screen stays up before the autopilot answers it: long enough to see
AUTO_DEADLINE: Final = 120.0  # the whole --auto run, start to claims
UI_WAIT: Final = 10.0


class AgentPanel(Vertical):
    """The agent's side: its steps as they happen, and the pairing code field (manual mode only)."""

    DEFAULT_CSS = """
    #agent-panel {
        dock: right;
        width: 46%;
        height: 1fr;
        border-left: tall $primary;
        background: $surface;
        padding: 0 1;
    }
    #agent-title { color: $primary; text-style: bold; height: 1; }
    #agent-note { color: $text-muted; height: auto; }
    #agent-log { height: 1fr; background: $surface; }
    #agent-code { height: 3; }
    #agent-outcome { height: auto; text-style: bold; }
    #agent-outcome.-ok { color: $success; }
    #agent-outcome.-failed { color: $error; }
    """

    def __init__(self, *, auto: bool) -> None:
        super().__init__(id="agent-panel")
        self._auto = auto

    def compose(self) -> ComposeResult:
        yield Static("Agent · MCP Python SDK over HTTP", id="agent-title", markup=False)
        note = (
            f"Autopilot: the demo answers the companion for you (PIN {DEMO_PIN})."
            if self._auto
            else f"Your PIN is {DEMO_PIN}. Type the code the companion shows below, then Enter. q quits."
        )
        yield Static(note, id="agent-note", markup=False)
        yield RichLog(id="agent-log", wrap=True, markup=False, highlight=False)
        yield Input(id="agent-code", placeholder="pairing code (XXXX-XXXX), as typed into the page", disabled=True)
        yield Static(id="agent-outcome", markup=False)

    def on_mount(self) -> None:
        self.query_one("#agent-code").display = not self._auto


class DemoHomeScreen(HomeScreen):
    def __init__(self, *, auto: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._auto = auto

    def compose(self) -> ComposeResult:
        yield AgentPanel(auto=self._auto)
        yield from super().compose()


class DemoApp(CompanionApp):
    CSS_PATH = str(Path(__file__).resolve().parent.parent / "app.tcss")  # the companion's own look
    TITLE = "Vouchsim demo"

    def __init__(self, config: CompanionConfig, *, server_url: str, camera_dir: Path, auto: bool) -> None:
        super().__init__(config, device_name=DEVICE_NAME)
        self.server_url = server_url
        self.camera_dir = camera_dir
        self.auto = auto
        self.transcript: list[str] = []
        self.result: AgentResult | None = None
        self.failure: str | None = None
        self._codes: asyncio.Queue[str] = asyncio.Queue()
        self._answered: set[int] = set()  # screens (by id) and delegations the autopilot handled
        self._chosen: set[str] = set()
        self._seen: dict[int, float] = {}
        self.agent_worker: Worker[None] | None = None

    # --- the home screen with the agent panel, and the agent once it is up ---------------------------------

    def _make_home(self) -> HomeScreen:
        return DemoHomeScreen(auto=self.auto, clock=self._clock, sleep=self._sleep, poll_interval=self._poll_interval)

    def _open_home(self, enrolment: Enrolment) -> None:
        super()._open_home(enrolment)
        self.agent_worker = self.run_worker(self._demo, name="agent", group="agent", exclusive=True)
        if self.auto:
            self.set_interval(0.2, self._autopilot, name="autopilot")
            self.set_timer(AUTO_DEADLINE, partial(self._fail, f"the demo did not finish in {AUTO_DEADLINE:g} s"))

    async def _demo(self) -> None:
        try:
            await self._point_camera()
            self.result = await run_agent(
                self.server_url, self.camera_dir, pairing_code=self._next_code, on_step=self.step
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of the agent ends here, shown in the panel
            self._fail(f"{exc.__class__.__name__}: {exc}" if not str(exc) else str(exc))
            return
        if not self.result.approved:
            self._finish(
                f"The delegation was {self.result.delegation.get('status')}: the agent got no token.", ok=False
            )
            return
        self._finish("The agent holds a verified delegation token.", ok=True)

    async def _point_camera(self) -> None:
        """The scan tab in watched-folder mode, on the folder the agent's browser saves the QR into."""
        home = self.home
        assert home is not None
        await _until(lambda: bool(home.query(RadioSet)) and home.query_one(RadioSet).pressed_button is not None)
        home.action_show("scan")
        scan = home.query_one(ScanView)
        field = scan.query_one("#scan-input", Input)
        scan.query_one("#mode-folder", RadioButton).value = True  # a set that has mounted takes the change
        await _until(lambda: field.placeholder == PLACEHOLDERS["folder"])  # the mode change was handled
        self.camera_dir.mkdir(parents=True, exist_ok=True)
        field.value = str(self.camera_dir)
        scan.start_watching(self.camera_dir)
        self.step(f"Companion: the camera watches {self.camera_dir}")

    async def _next_code(self) -> str:
        """The pairing code: typed into the panel by the person, or handed over by the autopilot."""
        if not self.auto and self.home is not None:
            field = self.home.query_one("#agent-code", Input)
            field.disabled = False
            field.focus()
        code = await self._codes.get()
        if self.home is not None:
            self.home.query_one("#agent-code", Input).disabled = True
        return code

    @on(Input.Submitted, "#agent-code")
    def _code_typed(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            event.input.value = ""
            self._codes.put_nowait(event.value.strip())

    # --- what the agent reports, and how the demo ends -------------------------------------------------------

    def step(self, text: str) -> None:
        self.transcript.append(text)
        if text.startswith("Agent: delegation_request") and self.home is not None:
            self.home.action_show("inbox")  # where the request shows up on the companion
        if self.home is not None and self.home.is_mounted:
            self.home.query_one("#agent-log", RichLog).write(clean(text) if not text.startswith("    ") else text)

    def _finish(self, text: str, *, ok: bool) -> None:
        self.step(("✔ " if ok else "✖ ") + text)
        if self.home is not None:
            outcome = self.home.query_one("#agent-outcome", Static)
            outcome.update(text if ok else f"{text} Press q to quit.")
            outcome.set_class(ok, "-ok")
            outcome.set_class(not ok, "-failed")
        if self.auto:
            if ok:
                self.exit(return_code=0)
            else:
                self.failure = text
                self.exit(return_code=1)

    def _fail(self, reason: str) -> None:
        if self.failure is None and (self.result is None or not self.result.approved):
            self._finish(f"The demo failed: {reason}", ok=False)
            self.failure = reason

    # --- --auto: press through what the person would ---------------------------------------------------------

    def _autopilot(self) -> None:
        screen = self.screen
        now = time.monotonic()
        first_seen = self._seen.setdefault(id(screen), now)
        if id(screen) in self._answered or now - first_seen < AUTO_PACE:
            return
        if isinstance(screen, PairingConfirmScreen):
            self._answered.add(id(screen))
            screen.query_one("#pin", Input).value = DEMO_PIN
            screen.query_one("#approve", Button).press()
        elif isinstance(screen, PairingCodeScreen):
            self._answered.add(id(screen))
            self._codes.put_nowait(screen.approval.pairing_code)
            screen.query_one("#done", Button).press()
        elif isinstance(screen, DelegationConfirmScreen):
            self._answered.add(id(screen))
            screen.query_one("#confirm", Button).press()
        elif screen is self.home and self.home is not None:
            for delegation in self.home.pending:
                if delegation.delegation_id not in self._chosen:
                    self._chosen.add(delegation.delegation_id)
                    self.post_message(DecisionChosen(delegation, "approve"))
                    return


async def _until(condition: Callable[[], bool], within: float = UI_WAIT) -> None:
    """Wait (bounded) for the UI to reach a state set by a message still in flight."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the companion's screen did not get ready in time")
        await asyncio.sleep(0.02)


async def enrol_demo_device(state_dir: Path, server_url: str) -> None:
    """A fresh device key, enrolled with the demo server, with the demo PIN."""
    async with httpx.AsyncClient(base_url=server_url, timeout=10.0) as http:
        await DeviceApiClient(http, Keystore(state_dir)).enrol(DEVICE_NAME)
    PinStore(state_dir).set(DEMO_PIN)


def run_demo(*, auto: bool, headless: bool = False, keep: bool = False) -> int:
    """Start the server, enrol, run the TUI; stop the server whatever happens. The exit status."""
    exit_on_termination()
    state = Path(tempfile.mkdtemp(prefix="vouchsim-demo-"))
    server = ServerProcess(state)
    status = 1
    try:
        print(f"Vouchsim demo: starting the server on {server.base_url} (state in {state})…", flush=True)
        try:
            server.start()
        except ServerStartError as exc:
            print(f"vouchsim demo: {exc}", file=sys.stderr)
            return 1
        asyncio.run(enrol_demo_device(state / "companion", server.base_url))
        config = CompanionConfig(state_dir=state / "companion", server_url=server.base_url)
        app = DemoApp(config, server_url=server.base_url, camera_dir=state / "camera", auto=auto)
        app.run(headless=headless)
        status = app.return_code if app.return_code is not None else 1
        for line in app.transcript:  # the agent's side, kept on the terminal after the TUI is gone
            print(line)
        if app.failure is not None or status != 0:
            print(f"vouchsim demo: failed: {app.failure or f'exit status {status}'}", file=sys.stderr)
            print(f"  server log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
            keep = True
        return status
    finally:
        server.stop()
        print(f"Vouchsim demo: the server on {server.base_url} is stopped.", flush=True)
        if keep:
            print(f"Vouchsim demo: state kept in {state}", flush=True)
        else:
            shutil.rmtree(state, ignore_errors=True)
