"""The demo's TUI: the companion, as a person uses it, with the scripted agent's panel on its right.

`DemoApp` is the companion app (`CompanionApp`) with these additions: the home screen gets an agent panel beside
the tabs (the agent's steps, and in manual mode the field where the person types the pairing code, as into the
browser), the scan tab's watched-folder camera is pointed at the folder the agent's browser saves the QR into, the
hint bar tells the story's next step, and the agent runs as a worker once the home screen is up. Under the agent's
log, the Timeline shows each request of the flow as the server records it (its testbed journal). The device is
enrolled before the app starts (`demo.run`), with a known PIN shown on screen, so the demo opens straight on the
home screen.

A newcomer can get a step wrong and go on: a declined or expired pairing is shown in red, with `n` for a new
pairing (the agent's browser opens the authorization page again, and its new QR reaches the camera). The pairing
code stays docked under the tabs until it is used or expires, and the agent's field has the focus meanwhile. A
failure shows its real reason (say `access_denied`), not an exception's wrapper; quitting before the story's end
exits 1 with that reason.

In `--auto`, an autopilot presses through what the person would: the pairing confirmation with the demo PIN, the
pairing code (typed into the agent's field), the approval of the delegation and its signing. The app then exits 0
once the agent has shown the token's claims, and 1 with the reason when something fails or the demo does not
finish in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Button, Input, RadioButton, RadioSet, RichLog, Static
from textual.worker import Worker

from vouchsim.companion.app import CompanionApp
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.core.keystore import Enrolment, Keystore
from vouchsim.companion.core.pin import PinStore
from vouchsim.companion.core.schemas import PairingApproval, PairingContext
from vouchsim.companion.core.text import clean, pairing_code
from vouchsim.companion.demo.agent import AgentResult, CodeRequest, CodeSource, StepReporter, run_agent
from vouchsim.companion.messages import DecisionChosen
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.pairing import PairingAnswer, PairingConfirmScreen
from vouchsim.companion.screens.scan import PLACEHOLDERS, ScanView
from vouchsim.companion.widgets.code_dock import ShownCode
from vouchsim.companion.widgets.hint_bar import Hint
from vouchsim.companion.widgets.timeline import Timeline

DEMO_PIN: Final = "0000"
DEVICE_NAME: Final = "Vouchsim demo phone"
AUTO_PACE: Final = 0.5  # seconds a screen stays up before the autopilot answers it: long enough to see
# (none under --headless, where nobody sees the screens: the e2e tests run the demo so)
AUTO_DEADLINE: Final = 120.0  # the whole --auto run, start to claims
UI_WAIT: Final = 10.0
APP_DIR: Final = Path(__file__).resolve().parent.parent
AGENT_FIELD: Final = "the agent panel on the right"


class Agent(Protocol):
    """`run_agent`'s shape: tests and screenshots hand in a scripted one."""

    def __call__(
        self,
        server_url: str,
        camera_dir: Path,
        *,
        pairing_code: CodeSource,
        on_step: StepReporter,
        protocol: str = "auto",
    ) -> Awaitable[AgentResult]: ...


class AgentPanel(Vertical):
    """The agent's side: its steps as they happen, the pairing code field (manual mode only), and under them the
    Timeline of what the server saw (when the demo's server runs the testbed controls, as `demo.run` starts it)."""

    def __init__(self, *, auto: bool, timeline: bool = False) -> None:
        super().__init__(id="agent-panel")
        self._auto = auto
        self._timeline = timeline

    def compose(self) -> ComposeResult:
        yield Static("Agent · MCP Python SDK over HTTP", id="agent-title", markup=False)
        note = (
            f"Autopilot: the demo answers the companion for you (PIN {DEMO_PIN})."
            if self._auto
            else f"Your PIN is {DEMO_PIN}. The field below is the browser's code field. ctrl+q quits."
        )
        yield Static(note, id="agent-note", markup=False)
        yield RichLog(id="agent-log", wrap=True, markup=False, highlight=False, min_width=20)
        yield Input(id="agent-code", placeholder="pairing code (XXXX-XXXX), as typed into the page", disabled=True)
        yield Static(id="agent-outcome", markup=False)
        if self._timeline:
            yield Timeline(id="agent-timeline")


class DemoHomeScreen(HomeScreen):
    """The home screen with the agent panel; the Timeline is in the panel, not in a tab."""

    def __init__(self, *, auto: bool, agent_timeline: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._auto = auto
        self._agent_timeline = agent_timeline

    def compose_side(self) -> ComposeResult:
        yield AgentPanel(auto=self._auto, timeline=self._agent_timeline)


class DemoApp(CompanionApp):
    CSS_PATH = [APP_DIR / "app.tcss", APP_DIR / "demo" / "demo.tcss"]  # the companion's look, and the demo's
    TITLE = "Vouchsim demo"
    BINDINGS = [Binding("n", "new_pairing", "New pairing")]

    def __init__(
        self,
        config: CompanionConfig,
        *,
        camera_dir: Path,
        auto: bool,
        agent: Agent = run_agent,
        protocol: str = "auto",
        pace: float = AUTO_PACE,
        **options: Any,
    ) -> None:
        """The agent talks to the server the companion does (`config.server_url`). `options` are CompanionApp's
        (tests hand in a fake server's HTTP, a clock, a sleep)."""
        super().__init__(config, device_name=DEVICE_NAME, **options)
        self.server_url = config.server_for(None)
        self.camera_dir = camera_dir
        self.auto = auto
        self.pace = pace  # seconds the autopilot leaves a screen up before it answers
        self._agent = agent
        self.protocol = protocol  # the agent's MCP negotiation: "auto" (the SDK's default) or "legacy"
        self.transcript: list[str] = []
        self.result: AgentResult | None = None
        self.failure: str | None = None
        self.outcome: Hint | None = None  # how the story ended (done or failed), once it has
        self.browser_waiting: CodeRequest | None = None  # the browser asks for a code (and why), or None
        self._codes: asyncio.Queue[str | None] = asyncio.Queue()
        self._answered: set[int] = set()  # screens (by id) and delegations the autopilot handled
        self._chosen: set[str] = set()
        self._seen: dict[int, float] = {}
        self.agent_worker: Worker[None] | None = None

    # --- the home screen with the agent panel, and the agent once it is up ---------------------------------

    def _make_home(self) -> HomeScreen:
        return DemoHomeScreen(
            auto=self.auto,
            agent_timeline=bool(self.config.testbed_token),
            clock=self._clock,
            sleep=self._sleep,
            poll_interval=self._poll_interval,
        )

    def _open_home(self, enrolment: Enrolment) -> None:
        super()._open_home(enrolment)
        self.agent_worker = self.run_worker(self._demo, name="agent", group="agent", exclusive=True)
        if self.auto:
            self.set_interval(0.1, self._autopilot, name="autopilot")
            self.set_timer(AUTO_DEADLINE, partial(self._fail, f"the demo did not finish in {AUTO_DEADLINE:g} s"))

    async def _demo(self) -> None:
        try:
            await self._point_camera()
            self.result = await self._agent(
                self.server_url,
                self.camera_dir,
                pairing_code=self._next_code,
                on_step=self.step,
                protocol=self.protocol,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of the agent ends here, shown in the panel and the hint bar
            self._fail(reason_of(exc))
            return
        if not self.result.approved:
            status = self.result.delegation.get("status")
            # The person's own choice (d) ends the story; anything else did not go as it should.
            self._finish(f"The delegation was {status}: the agent got no token.", ok=status == "denied")
            return
        self._finish("The agent holds a verified delegation token.", ok=True)

    async def _point_camera(self) -> None:
        """The scan tab in watched-folder mode, on the folder the agent's browser saves the QR into."""
        home = self.home
        assert home is not None
        await _until(
            lambda: (
                home.is_mounted and bool(home.query(RadioSet)) and home.query_one(RadioSet).pressed_button is not None
            )
        )
        scan = home.query_one(ScanView)
        field = scan.query_one("#scan-input", Input)
        scan.query_one("#mode-folder", RadioButton).value = True  # a set that has mounted takes the change
        await _until(lambda: field.placeholder == PLACEHOLDERS["folder"])  # the mode change was handled
        self.camera_dir.mkdir(parents=True, exist_ok=True)
        field.value = str(self.camera_dir)
        scan.start_watching(self.camera_dir)
        self.step(f"Companion: the camera watches {self.camera_dir}")
        self.show_next_step()

    # --- the pairing code: typed by the person into the agent's field, or by the autopilot ------------------

    async def _next_code(self, request: CodeRequest) -> str | None:
        """The browser asks for a code (or a new pairing, None); `request` says why the last one did not work."""
        self.browser_waiting = request
        self.refresh_bindings()
        self.show_next_step()
        field = self._code_field()
        if field is not None:
            # A page that takes no more codes leaves the field off, so `n` (a new pairing) is a key, not a letter.
            field.disabled = self.auto or request.closed
            field.set_class(not field.disabled, "-waiting")
            if not field.disabled and not isinstance(self.screen, PairingConfirmScreen):
                field.focus()
        try:
            return await self._codes.get()
        finally:
            self.browser_waiting = None
            if self.screen_stack:  # not when the app is going away
                self.refresh_bindings()
            if field is not None:
                field.disabled = True
                field.set_class(False, "-waiting")

    @on(Input.Submitted, "#agent-code")
    def _code_typed(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() and self.browser_waiting is not None:
            event.input.value = ""
            self._codes.put_nowait(event.value.strip())
            self.set_focus(None)  # out of the field while the browser works: `a`, `n` and `q` are keys again
            self.show_next_step()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new_pairing":
            return self.browser_waiting is not None and self.outcome is None
        return super().check_action(action, parameters)

    def action_new_pairing(self) -> None:
        """The agent's browser opens the authorization page again: a new pairing, a new QR for the camera."""
        if self.browser_waiting is None or self.outcome is not None:
            return
        self.pairing_problem = ""
        self._scan_status("working", "The agent's browser opens the authorization page again; a new QR is coming…")
        self._show_code(None)
        self._codes.put_nowait(None)

    def _code_field(self) -> Input | None:
        if self.home is None:
            return None
        try:
            return self.home.query_one("#agent-code", Input)
        except NoMatches:  # not composed yet, or the app is going away
            return None

    # --- the companion's side of the story ------------------------------------------------------------------

    def code_for(self, context: PairingContext, approval: PairingApproval) -> ShownCode:
        return ShownCode(approval, context.client_name, context.client_id, where=AGENT_FIELD)

    def retry_pairing_hint(self) -> str:
        return "n starts a new pairing (the agent's browser opens the page again)."

    def pairing_answered(self, context: PairingContext, answer: PairingAnswer) -> None:
        field = self._code_field()
        if answer is PairingAnswer.APPROVED and field is not None and not self.auto:
            field.focus()  # where the code goes: the person types it at once, with the code still in view

    def next_step(self) -> Hint:
        """The story's next step, in the hint bar."""
        if self.outcome is not None:
            return self.outcome
        home = self.home
        if home is None:
            return Hint()
        waiting = self.browser_waiting
        if home.code is not None:
            code = pairing_code(home.code.approval.pairing_code)
            return Hint(f"Type the code {code} into the agent's field on the right, then press Enter.")
        if waiting is not None and waiting.problem:  # the page's own words: newer than what the companion knew
            more = "Press n for a new pairing." if waiting.closed else "Type the code again, or press n for a new one."
            return Hint(f"The page answered {waiting.problem} {more}", "problem")
        if self.pairing_problem:
            return Hint(f"{self.pairing_problem} Press n for a new pairing.", "problem")
        if home.pending:
            newest = home.pending[0]
            return Hint(
                f"Press a to approve the agent's request (d denies). Its binding message "
                f"{clean(newest.binding_message)} is the one the agent shows."
            )
        if isinstance(self.screen, PairingConfirmScreen):
            return Hint(f"Type the PIN {DEMO_PIN} and press Enter to approve the pairing (Esc declines).")
        if waiting is not None:
            return Hint("The QR is in the camera folder: the companion asks you to confirm the pairing…")
        return super().next_step()

    # --- what the agent reports, and how the demo ends -------------------------------------------------------

    def step(self, text: str) -> None:
        self.transcript.append(text)
        if text.startswith("Agent: delegation_request") and self.home is not None:
            self.home.action_show("inbox")  # where the request shows up on the companion
        if self.home is not None and self.home.is_mounted:
            self.home.query_one("#agent-log", RichLog).write(clean(text) if not text.startswith("    ") else text)

    def _finish(self, text: str, *, ok: bool) -> None:
        self.step(("✔ " if ok else "✖ ") + text)
        self.outcome = Hint(f"{text} q quits.", "done" if ok else "problem")
        if not ok:
            self.failure = text
        if self.home is not None and self.home.is_mounted:
            outcome = self.home.query_one("#agent-outcome", Static)
            outcome.update(text)
            outcome.set_class(ok, "-ok")
            outcome.set_class(not ok, "-failed")
        self.refresh_bindings()
        self.show_next_step()
        if self.auto:
            self.exit(return_code=0 if ok else 1)

    def _fail(self, reason: str) -> None:
        if self.outcome is None:
            self._finish(f"The demo failed: {reason}", ok=False)
            self.failure = reason

    async def action_quit(self) -> None:
        """The story's end is exit status 0; quitting before it is 1, with where it stood."""
        if self.outcome is None:
            self.failure = f"stopped before the end: {self.next_step().text}"
        self.exit(return_code=0 if self.failure is None else 1)

    # --- --auto: press through what the person would ---------------------------------------------------------

    def _autopilot(self) -> None:
        screen = self.screen
        now = time.monotonic()
        first_seen = self._seen.setdefault(id(screen), now)
        if now - first_seen < self.pace:
            return
        # A screen just pushed may not have composed its widgets yet (with no pace, the next tick can come
        # first): answer it only once its button is there.
        if isinstance(screen, PairingConfirmScreen) and id(screen) not in self._answered:
            if approve := _composed(screen, "#approve"):
                self._answered.add(id(screen))
                screen.query_one("#pin", Input).value = DEMO_PIN
                approve.press()
        elif isinstance(screen, DelegationConfirmScreen) and id(screen) not in self._answered:
            if confirm := _composed(screen, "#confirm"):
                self._answered.add(id(screen))
                confirm.press()
        elif screen is self.home and self.home is not None:
            if self.home.code is not None and self.browser_waiting is not None:
                code = pairing_code(self.home.code.approval.pairing_code)
                if code not in self._chosen:
                    self._chosen.add(code)
                    self.step(f"Autopilot: typing {code} into the agent's field")
                    self._codes.put_nowait(code)
                return
            for delegation in self.home.pending:
                if delegation.delegation_id not in self._chosen:
                    self._chosen.add(delegation.delegation_id)
                    self.post_message(DecisionChosen(delegation, "approve"))
                    return


def _composed(screen: Screen[Any], selector: str) -> Button | None:
    """The screen's button, or None while the screen has not composed it yet."""
    found = screen.query(selector)
    return found.only_one(Button) if found else None


def reason_of(error: BaseException) -> str:
    """The failure a person can act on: what an exception group (the MCP SDK's task groups) wraps, not the group."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        if not inner:
            break
        error = inner[0]
    text = str(error).strip()
    return text if text else error.__class__.__name__


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
