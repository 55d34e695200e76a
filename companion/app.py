"""The companion TUI: `vouchsim companion` with no command. A thin layer over `companion.core`.

The app is the one place that talks to the server. Screens and widgets show what it hands down
(attributes) and report what the person did (messages, `companion.messages`); the app answers each
message with a background worker, and every failure of every worker ends in `_report`, which turns it
into a toast and, where a screen has a place for it, an inline message. The live delegation stream is
one long-running worker around the core's `DelegationFollower` (the same one `watch`, the side-car and the test
kit use), which reconnects with backoff whenever the server goes away; the app says so in the status bar.

Everything the outside world provides is passed in: the config, how to make an HTTP client for a server
URL, the clock, the randomness, the sleep between retries and folder polls, and the PIN store.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import replace
from functools import partial
from pathlib import Path, PurePath
from typing import Any, ClassVar, Final

import httpx
import msgspec
from platformdirs import user_downloads_path
from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker

from vouchsim.companion.camera import read_qr_text
from vouchsim.companion.core.client import MAX_NAME_LENGTH, DeviceApiClient
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.core.errors import (
    ApiError,
    CompanionError,
    ConnectionNotFoundError,
    DelegationClosedError,
    DelegationNotFoundError,
    DeviceExistsError,
    DeviceRevokedError,
    InvalidSignatureError,
    KeystoreError,
    McpEndpointError,
    NotEnrolledError,
    TransportError,
)
from vouchsim.companion.core.follower import DelegationFollower, LinkEvent
from vouchsim.companion.core.keystore import Enrolment, Keystore, fingerprint, public_key_bytes
from vouchsim.companion.core.pin import PinStore
from vouchsim.companion.core.schemas import Connection, Delegation, PairingApproval, PairingContext
from vouchsim.companion.core.signing import Clock, RandomBytes
from vouchsim.companion.core.testbed import (
    JournalEntry,
    TestbedClient,
    TestbedDisabledError,
    TestbedUnauthorizedError,
    is_step,
)
from vouchsim.companion.core.text import clean, pairing_code, sentence, when
from vouchsim.companion.messages import (
    DecisionChosen,
    DelegationLapsed,
    EnrolmentFinished,
    EnrolmentSubmitted,
    PairingCodeLapsed,
    PinChosen,
    RevokeChosen,
    ScanSubmitted,
    UnpairChosen,
    ViewShown,
)
from vouchsim.companion.screens.confirm import ConfirmScreen
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.enrol import EnrolScreen
from vouchsim.companion.screens.help import HelpScreen
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.pairing import PairingAnswer, PairingConfirmScreen
from vouchsim.companion.screens.scan import ScanKind, ScanStatus
from vouchsim.companion.widgets.code_dock import ShownCode
from vouchsim.companion.widgets.hint_bar import Hint
from vouchsim.companion.widgets.status_bar import Link, LinkState
from vouchsim.companion.widgets.timeline import MAX_SHOWN

HttpFactory = Callable[[str], httpx.AsyncClient]
Sleep = Callable[[float], Awaitable[None]]
Job = Callable[[], Awaitable[None]]

USER_AGENT: Final = "vouchsim-companion-tui"
POLL_INTERVAL: Final = 0.5
CODE_POLL_INTERVAL: Final = 1.0  # while a pairing code is docked: has a connection of its client appeared yet?
JOURNAL_RETRY: Final = 2.0  # seconds before the Timeline reads the journal again after a failure

DARK = Theme(
    name="vouchsim-dark",
    primary="#5B8DEF",
    secondary="#8E7CC3",
    accent="#F2A541",
    warning="#F2A541",
    error="#E5484D",
    success="#30A46C",
    background="#111418",
    surface="#1A1E24",
    panel="#232932",
    dark=True,
)
LIGHT = Theme(
    name="vouchsim-light",
    primary="#2F5FD0",
    secondary="#6B57A8",
    accent="#B8621B",
    warning="#B8621B",
    error="#C8262C",
    success="#1F7A4D",
    background="#F6F7F9",
    surface="#FFFFFF",
    panel="#E4E8EE",
    dark=False,
)

# Core hints speak of CLI flags; in the app, say what to do here instead.
TUI_HINTS: dict[type[CompanionError], str] = {
    DeviceExistsError: "This key is already enrolled there; to start over, remove the state directory.",
    NotEnrolledError: "Restart the app to enrol.",
    McpEndpointError: "Type the server's base URL instead.",
    InvalidSignatureError: "Check this computer's clock; if the device was removed on the server, enrol again.",
    DeviceRevokedError: "Quit, run `vouchsim companion forget` to delete its key, then enrol again.",
    ConnectionNotFoundError: "The list is refreshed.",
    DelegationNotFoundError: "The list is refreshed.",
    DelegationClosedError: "Someone or something decided it first; the list is refreshed.",
}
TITLES: dict[str, str] = {
    "enrol": "Enrolment failed",
    "scan": "Scan failed",
    "decide": "Decision not sent",
    "revoke": "Revocation failed",
    "unpair": "Unpair failed",
    "connections": "Could not load the connections",
    "refresh": "Could not load the delegations",
    "stream": "Live updates stopped",
    "forget": "Could not forget this device",
}
BACKGROUND = frozenset({"connections", "refresh", "code-use", "timeline"})  # loads nobody asked for by hand
# How far a delegation's status has moved; a stale answer must not move one back.
_PROGRESS = {"pending": 0, "approved": 1}


def http_factory_for(config: CompanionConfig) -> HttpFactory:
    """Real HTTP clients: one per server URL, with the config's timeout."""

    def make(server_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=server_url, timeout=config.timeout, headers={"User-Agent": USER_AGENT})

    return make


def default_device_name() -> str:
    return f"Vouchsim companion on {socket.gethostname()}"[:MAX_NAME_LENGTH]


def supersedes(incoming: Delegation, known: Delegation | None) -> bool:
    """Whether `incoming` is news about `known`. A stream event and a list answer can cross on the wire,
    and a status never goes back towards pending (pending, then approved, then revoked or closed), so an
    older picture of a delegation must not undo a newer one."""
    return known is None or _PROGRESS.get(incoming.status, 2) >= _PROGRESS.get(known.status, 2)


def screenshot_directory(downloads: Path | None = None) -> Path:
    """Where a screenshot goes: the Downloads folder when there is one, else the working directory (Textual's
    default, the Downloads folder, fails on machines that have none, such as servers and containers)."""
    folder = downloads if downloads is not None else user_downloads_path()
    return folder if folder.is_dir() else Path.cwd()


def explain(error: CompanionError) -> str:
    """The error as the app shows it: the sentence, then what to do."""
    return sentence(str(error), TUI_HINTS.get(type(error), error.hint))


class CompanionApp(App[None]):
    # Textual's CSSPathType, spelled out: the demo adds its own sheet to this one (a list).
    CSS_PATH: ClassVar[str | PurePath | list[str | PurePath] | None] = "app.tcss"
    TITLE = "Vouchsim companion"
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
        Binding("t", "toggle_theme", "Theme"),
        Binding("r", "reconnect", "Reconnect"),
        # `q` outside a text field (where it is a letter); ctrl+q from anywhere, and that is what the footer shows.
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    link: reactive[Link] = reactive(Link, init=False)

    def __init__(
        self,
        config: CompanionConfig,
        *,
        http_factory: HttpFactory | None = None,
        pins: PinStore | None = None,
        clock: Clock = time.time,
        random_bytes: RandomBytes = secrets.token_bytes,
        sleep: Sleep = asyncio.sleep,
        poll_interval: float = POLL_INTERVAL,
        device_name: str | None = None,
        dark: bool = True,
        screenshots: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.keystore = Keystore(config.state_dir)
        self.pins = pins or PinStore(config.state_dir)
        self._http_factory = http_factory or http_factory_for(config)
        self._clock = clock
        self._random_bytes = random_bytes
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._device_name = device_name or default_device_name()
        self._dark = dark
        self._http: httpx.AsyncClient | None = None
        self._api: DeviceApiClient | None = None
        self.home: HomeScreen | None = None
        self._delegations: dict[str, Delegation] = {}
        self._connections: tuple[Connection, ...] = ()
        self._scanning = False
        self._lost = False  # the live connection was up, then broke: say so when it is back
        self._screenshots = screenshots
        self.pairing_problem = ""  # the last pairing that did not go through, for the hint bar, until the next one
        self.timeline: tuple[JournalEntry, ...] = ()  # what the Timeline shows (with a testbed token)

    # --- start and stop ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.register_theme(DARK)
        self.register_theme(LIGHT)
        self.theme = DARK.name if self._dark else LIGHT.name
        try:
            enrolment = self.keystore.read_enrolment()
            identity = self.keystore.load_identity() if enrolment is not None else None
            key = self.keystore.read_key()
        except KeystoreError as exc:
            self.push_screen(self._enrol_screen(None))
            self.notify(explain(exc), title="The device's files are damaged", severity="error", timeout=15)
            return
        if identity is None:
            self.push_screen(self._enrol_screen(fingerprint(public_key_bytes(key)) if key else None))
        elif not self.pins.is_set():
            self._connect(self.config.server_for(identity.enrolment.server_url))
            self.push_screen(self._enrol_screen(None, existing=identity.enrolment))
        else:
            self._open_home(identity.enrolment)

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        if self._http is not None:
            await self._http.aclose()

    def _enrol_screen(self, key_fingerprint: str | None, existing: Enrolment | None = None) -> EnrolScreen:
        return EnrolScreen(
            server_url=self.config.server_for(None),
            device_name=self._device_name,
            key_fingerprint=key_fingerprint,
            existing=existing,
        )

    def _connect(self, server_url: str) -> DeviceApiClient:
        """Talk to `server_url` from now on (a fresh HTTP client; the previous one is closed)."""
        old = self._http
        self._http = self._http_factory(server_url)
        self._api = DeviceApiClient(self._http, self.keystore, clock=self._clock, random_bytes=self._random_bytes)
        if old is not None:
            self._run(old.aclose, name="close")
        return self._api

    @property
    def api(self) -> DeviceApiClient:
        if self._api is None:
            raise NotEnrolledError()
        return self._api

    def _open_home(self, enrolment: Enrolment) -> None:
        server = self.config.server_for(enrolment.server_url)
        if self._api is None or self._api.server_url != server.rstrip("/"):
            self._connect(server)
        self.home = self._make_home()
        self.link = Link("connecting", server=server, device=enrolment.name, fingerprint=enrolment.fingerprint)
        if isinstance(self.screen, EnrolScreen):
            self.switch_screen(self.home)
        else:
            self.push_screen(self.home)
        self._follow_delegations()  # loads the lists once the live connection is up
        if self.config.testbed_token:
            self._run(partial(self._follow_journal, server, self.config.testbed_token), name="timeline", exclusive=True)

    def _make_home(self) -> HomeScreen:
        """The home screen; the demo (`companion.demo.app`) adds its agent panel here."""
        return HomeScreen(
            clock=self._clock,
            sleep=self._sleep,
            poll_interval=self._poll_interval,
            timeline=bool(self.config.testbed_token),
        )

    # --- the Timeline: the server's testbed journal, followed live ---------------------------------------------

    async def _follow_journal(self, server_url: str, token: str) -> None:
        """The newest entries the journal holds, then each new one as it is recorded (long polls), handed down
        to the home screen. A server without the testbed controls, or refusing the token, ends it (said in the
        Timeline); any other failure is retried after JOURNAL_RETRY seconds, from where it stood."""
        after: int | None = None
        shown: list[JournalEntry] = []
        while True:
            try:
                async with self._http_factory(server_url) as http:
                    testbed = TestbedClient(http, token)
                    if after is None:
                        shown = [e for e in await testbed.journal(limit=MAX_SHOWN) if is_step(e)]
                        after = max((e.id for e in shown), default=0)
                        self._hand_down_journal(shown, "")
                    async for entry in testbed.follow(since=after):
                        after = entry.id
                        if is_step(entry):
                            shown = [*shown[-(MAX_SHOWN - 1) :], entry]
                            self._hand_down_journal(shown, "")
            except (TestbedDisabledError, TestbedUnauthorizedError) as exc:
                # No testbed: no Timeline tab. A refused token: the tab, saying so.
                self._hand_down_journal(shown, explain(exc), ready=isinstance(exc, TestbedUnauthorizedError))
                return
            except CompanionError as exc:
                self._hand_down_journal(shown, f"{clean(str(exc))} Trying again in {JOURNAL_RETRY:g} s.", ready=None)
                await self._sleep(JOURNAL_RETRY)

    def _hand_down_journal(self, entries: list[JournalEntry], status: str, *, ready: bool | None = True) -> None:
        """`ready`: whether the Timeline tab shows (None: as it was)."""
        self.timeline = tuple(entries)
        if self.home is None:
            return
        self.home.timeline = tuple(entries)
        self.home.timeline_status = status
        if ready is not None:
            self.home.timeline_ready = ready

    # --- attributes down -----------------------------------------------------------------------------------

    def watch_link(self, old: Link, new: Link) -> None:
        if self.home is not None:
            self.home.link = new
        if old.state == "online" and new.state == "offline":
            self._lost = True
            self.notify(clean(new.detail), title="Lost the server", severity="warning")
        elif self._lost and new.state == "online":
            self._lost = False
            self.notify(f"Connected to {clean(new.server)} again.", title="Back online")
        self.show_next_step()

    def _set_link(self, state: LinkState, detail: str = "") -> None:
        self.link = replace(self.link, state=state, detail=detail)

    def _publish_delegations(self) -> None:
        if self.home is None:
            return
        newest_first = sorted(self._delegations.values(), key=lambda d: d.created_at, reverse=True)
        self.home.pending = tuple(d for d in newest_first if d.is_pending)
        self.home.history = tuple(
            sorted(
                (d for d in newest_first if not d.is_pending),
                key=lambda d: d.decided_at or d.expires,
                reverse=True,
            )
        )
        self.show_next_step()

    # --- the hint bar: the next step, always on screen ---------------------------------------------------

    def show_next_step(self) -> None:
        if self.home is not None:
            self.home.hint = self.next_step()

    def next_step(self) -> Hint:
        """What the person can do next (the demo tells its own story here)."""
        home = self.home
        if home is None:
            return Hint()
        if self.link.state == "revoked":
            return Hint(
                "This device was revoked on the server: it can no longer pair or decide. Quit (q), run "
                "`vouchsim companion forget`, then enrol again.",
                "problem",
            )
        if self.link.state == "refused":
            return Hint("The server refused this device (see above): r tries again.", "problem")
        if isinstance(self.screen, PairingConfirmScreen):
            return Hint("Type your PIN and press Enter to approve the pairing; Esc declines it.")
        if home.code is not None:
            code = home.code
            return Hint(
                f"Type the code {pairing_code(code.approval.pairing_code)} into {code.where}: it is valid until "
                f"{when(code.approval.code_expires_at)}."
            )
        if home.pending:
            newest = home.pending[0]
            more = "; ↑ ↓ choose another" if len(home.pending) > 1 else ""
            return Hint(
                f"a approves, d denies the request of {clean(newest.client_name)} "
                f"(binding {clean(newest.binding_message)}){more}."
            )
        if self.pairing_problem:
            return Hint(self.pairing_problem, "problem")
        if self.link.state == "offline":
            return Hint("The server is not answering: the app reconnects by itself, r tries now.", "problem")
        return Hint("Waiting for requests. s scans the QR of an authorization page to pair an application; ? help.")

    def _merge(self, delegation: Delegation) -> None:
        if supersedes(delegation, self._delegations.get(delegation.delegation_id)):
            self._delegations[delegation.delegation_id] = delegation

    def _scan_status(self, kind: ScanKind, text: str, hint: str = "") -> None:
        if self.home is not None:
            self.home.scan_status = ScanStatus(kind, text, hint)

    # --- workers, and the one place their failures end up ----------------------------------------------

    def _run(self, job: Job, *, name: str, exclusive: bool = False) -> Worker[None]:
        # A function, not a coroutine: an exclusive worker may be cancelled before it starts, and a
        # coroutine made for it would then never be awaited.
        return self.run_worker(partial(self._guarded, job, name), name=name, group=name, exclusive=exclusive)

    async def _guarded(self, job: Job, name: str) -> None:
        try:
            await job()
        except CompanionError as exc:
            self._report(exc, name)
        except Exception as exc:  # a bug: still no traceback on screen, but say it is one
            self._report(CompanionError(f"Internal error ({exc.__class__.__name__}: {exc})."), name)

    def _report(self, error: CompanionError, operation: str) -> None:
        text = explain(error)
        if isinstance(error, DeviceRevokedError):  # whatever was being done: the device itself is gone
            self._set_link("revoked", text)
        if not (isinstance(error, TransportError) and operation in BACKGROUND):
            # A list that could not load for want of a server: the status bar says so already, and the
            # list is loaded again when the live connection is back.
            self.notify(clean(text), title=TITLES.get(operation, "Error"), severity="error", timeout=10)
        screen = self.screen
        if operation == "enrol" and isinstance(screen, EnrolScreen):
            screen.error = text
        if operation == "scan":
            self._scan_status("error", str(error), TUI_HINTS.get(type(error), error.hint))
        if isinstance(error, DelegationClosedError | DelegationNotFoundError):
            self._refresh_delegations()
        if isinstance(error, ConnectionNotFoundError):
            self._load_connections()

    # --- the live delegation stream -------------------------------------------------------------------

    def _follow_delegations(self) -> None:
        self._run(self._follow, name="stream", exclusive=True)

    async def _follow(self) -> None:
        """The core's follower: each delegation the server sends lands in the lists; it reconnects by itself."""
        follower = DelegationFollower(self.api, on_link=self._link_changed, sleep=self._sleep)
        try:
            await follower.run(self._delegation_arrived)
        except DeviceRevokedError as exc:  # revoked on the server (by itself or the operator): for good
            self._report(exc, "stream")
        except ApiError as exc:  # a refusal (bad signature, device removed) does not heal by waiting
            self._set_link("refused", f"{explain(exc)} Press r to retry.")
            self._report(exc, "stream")
        except CompanionError as exc:
            self._set_link("refused", explain(exc))
            self._report(exc, "stream")

    def _link_changed(self, event: LinkEvent) -> None:
        if event.state == "connecting":
            self._set_link("connecting", "")
        elif event.state == "online":
            self._set_link("online")
            self._refresh_delegations()
            self._load_connections()
        else:
            self._set_link("offline", f"{event.problem} Retrying in {event.retry_in:g} s; r retries now.")

    async def _delegation_arrived(self, delegation: Delegation) -> bool:
        self._merge(delegation)
        self._publish_delegations()
        return False  # follow until the app goes

    def _refresh_delegations(self) -> None:
        self._run(self._load_delegations, name="refresh", exclusive=True)

    async def _load_delegations(self) -> None:
        for delegation in await self.api.delegations("all"):
            self._merge(delegation)
        self._publish_delegations()

    def _load_connections(self) -> None:
        self._run(self._fetch_connections, name="connections", exclusive=True)

    async def _fetch_connections(self) -> None:
        self._connections = tuple(await self.api.connections())
        if self.home is not None:
            self.home.connections = self._connections

    # --- what the person did --------------------------------------------------------------------------

    @on(EnrolmentSubmitted)
    def _enrolment_submitted(self, event: EnrolmentSubmitted) -> None:
        if isinstance(self.screen, EnrolScreen):
            self._run(partial(self._enrol, self.screen, event), name="enrol", exclusive=True)

    async def _enrol(self, screen: EnrolScreen, event: EnrolmentSubmitted) -> None:
        screen.busy = True
        try:
            api = self._connect(event.server_url)
            await api.enrol(event.name)
            self.pins.set(event.pin)
            screen.enrolled = api.identity().enrolment
        finally:
            screen.busy = False

    @on(PinChosen)
    def _pin_chosen(self, event: PinChosen) -> None:
        screen = self.screen
        if not isinstance(screen, EnrolScreen) or screen.existing is None:
            return
        try:
            self.pins.set(event.pin)
        except CompanionError as exc:
            screen.error = explain(exc)
            return
        self._open_home(screen.existing)

    @on(EnrolmentFinished)
    def _enrolment_finished(self) -> None:
        self._open_home(self.api.identity().enrolment)

    @on(ScanSubmitted)
    def _scan_submitted(self, event: ScanSubmitted) -> None:
        if self._scanning:
            self._scan_status("error", f"Ignored {event.source.label}: answer the pairing on screen first.")
            return
        self._scanning = True
        self._run(partial(self._scan, event), name="scan")

    async def _scan(self, event: ScanSubmitted) -> None:
        try:
            await self._pair(event)
        finally:
            self._scanning = False

    async def _pair(self, event: ScanSubmitted) -> None:
        api = self.api
        http = self._http
        assert http is not None  # set together with the API client
        label = clean(event.source.label)
        self._scan_status("working", f"Reading the QR code in {label}…")
        payload = await read_qr_text(event.source, http)
        self._scan_status("working", "Asking the server who wants to pair…")
        context = await api.claim(payload)  # checks the QR names our server before any request
        client = clean(context.client_name)
        self._scan_status("working", f"{client} wants to pair: waiting for your answer…")
        self.pairing_problem = ""
        screen = PairingConfirmScreen(context, pins=self.pins, clock=self._clock)
        self.call_after_refresh(self.show_next_step)  # once the question is on screen
        answer = await self.push_screen_wait(screen)
        if answer is PairingAnswer.APPROVED:
            known = frozenset(c.connection_id for c in await api.connections())
            approval = await api.approve_pairing(context.pairing_id)
            self._scan_status("done", f"Approved {client}: type the code it was given where it asks for it.")
            shown = self.code_for(context, approval)
            self._show_code(shown)
            self.pairing_answered(context, answer)
            self._run(partial(self._watch_code_use, shown, known), name="code-use", exclusive=True)
            return
        if answer is PairingAnswer.EXPIRED:
            self.pairing_problem = f"The pairing request from {client} expired before it was approved."
        else:
            await api.decline_pairing(context.pairing_id)
            why = "Too many wrong PINs: declined" if answer is PairingAnswer.PIN_LOCKED else "Declined"
            self.pairing_problem = f"{why} {client}: the application is told access was denied."
        self._scan_status("error", self.pairing_problem, self.retry_pairing_hint())
        self.pairing_answered(context, answer)
        self.show_next_step()

    def code_for(self, context: PairingContext, approval: PairingApproval) -> ShownCode:
        """The pairing code to dock, and where the person types it (the demo: its agent panel)."""
        return ShownCode(approval, context.client_name, context.client_id)

    def retry_pairing_hint(self) -> str:
        """How to pair again after a decline or an expiry (the demo has a key for it)."""
        return "Reload the application's authorization page for a new QR, then scan it."

    def pairing_answered(self, context: PairingContext, answer: PairingAnswer) -> None:
        """The person answered a pairing request (the demo follows its story here)."""

    def _show_code(self, shown: ShownCode | None) -> None:
        if self.home is not None:
            self.home.code = shown
        self.show_next_step()

    async def _watch_code_use(self, shown: ShownCode, known: frozenset[str]) -> None:
        """The docked code is used once a new connection of its client appears; then it goes."""
        while self.home is not None and self.home.code == shown:
            await self._sleep(CODE_POLL_INTERVAL)
            try:
                connections = tuple(await self.api.connections())
            except TransportError:
                continue  # the status bar says the server is away; look again later
            used = any(
                c.client_id == shown.client_id and c.connection_id not in known and c.revoked_at is None
                for c in connections
            )
            if used and self.home is not None and self.home.code == shown:
                self._connections = connections
                self.home.connections = connections
                self.code_used(shown)
                return

    def code_used(self, shown: ShownCode) -> None:
        """The pairing code was typed where it belongs: the application is paired."""
        self._show_code(None)
        client = clean(shown.client_name)
        self._scan_status("done", f"Paired {client}: it is listed under Connections.")
        self.notify(f"{client} is paired with your account.", title="Paired")

    @on(PairingCodeLapsed)
    def _code_lapsed(self, event: PairingCodeLapsed) -> None:
        home = self.home
        if home is None or home.code is None or home.code.approval != event.approval:
            return
        client = clean(home.code.client_name)
        self._show_code(None)
        self.pairing_problem = f"The pairing code for {client} expired before it was used."
        self._scan_status("error", self.pairing_problem, self.retry_pairing_hint())
        self.show_next_step()

    @on(DecisionChosen)
    def _decision_chosen(self, event: DecisionChosen) -> None:
        self._run(partial(self._decide, event), name="decide", exclusive=True)

    async def _decide(self, event: DecisionChosen) -> None:
        api = self.api
        current = self._delegations.get(event.delegation.delegation_id, event.delegation)
        signed = api.sign_decision(current, event.decision)  # no I/O: the modal shows these very bytes
        screen = DelegationConfirmScreen(current, signed, device=api.identity().enrolment, clock=self._clock)
        if not await self.push_screen_wait(screen):
            return
        result = await api.send_decision(signed)
        self._merge(result)
        self._publish_delegations()
        verb = "Approved" if event.decision == "approve" else "Denied"
        self.notify(f"{verb} {clean(result.client_name)} at {clean(result.audience_name)}.", title=verb)

    @on(DelegationLapsed)
    def _delegation_lapsed(self, event: DelegationLapsed) -> None:
        known = self._delegations.get(event.delegation.delegation_id)
        if known is not None and known.is_pending:
            self._delegations[known.delegation_id] = msgspec.structs.replace(known, status="expired")
            self._publish_delegations()

    @on(RevokeChosen)
    def _revoke_chosen(self, event: RevokeChosen) -> None:
        self._run(partial(self._revoke, event.delegation), name="revoke", exclusive=True)

    async def _revoke(self, delegation: Delegation) -> None:
        until = f" ({when(delegation.token_expires_at)})" if delegation.token_expires_at else ""
        question = ConfirmScreen(
            "Revoke this delegation?",
            f"{clean(delegation.client_name)} loses the right to act for you at {clean(delegation.audience_name)}. "
            "An audience that checks its token online (introspection) refuses it at once; one that verifies it "
            f"offline against the server's published keys (JWKS) accepts it until it expires{until}.",
            confirm="Revoke",
        )
        if not await self.push_screen_wait(question):
            return
        result = await self.api.revoke_delegation(delegation.delegation_id)
        self._merge(result)
        self._publish_delegations()
        self.notify(f"Revoked {clean(result.client_name)} at {clean(result.audience_name)}.", title="Revoked")

    @on(UnpairChosen)
    def _unpair_chosen(self, event: UnpairChosen) -> None:
        self._run(partial(self._unpair, event.connection), name="unpair", exclusive=True)

    async def _unpair(self, connection: Connection) -> None:
        question = ConfirmScreen(
            f"Unpair {clean(connection.client_name)}?",
            "The application and every token it holds stop working at once; it has to pair again.",
            confirm="Unpair",
        )
        if not await self.push_screen_wait(question):
            return
        result = await self.api.revoke_connection(connection.connection_id)
        self._connections = tuple(result if c.connection_id == result.connection_id else c for c in self._connections)
        if self.home is not None:
            self.home.connections = self._connections
        self.notify(f"Unpaired {clean(result.client_name)}.", title="Unpaired")

    @on(ViewShown)
    def _view_shown(self, event: ViewShown) -> None:
        if event.view == "connections":
            self._load_connections()
        elif event.view == "history":
            self._refresh_delegations()

    # --- actions ----------------------------------------------------------------------------------------

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Textual's screenshot (the command palette's "Screenshot"), into a folder that exists."""
        folder = path or str(self._screenshots or screenshot_directory())
        return super().deliver_screenshot(filename, folder, time_format)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT.name if self.theme == DARK.name else DARK.name

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.home is not None:
            yield SystemCommand(
                "Forget this device",
                "Revoke this device on the server (a lost phone's twin), delete its key here, and quit",
                self.action_forget_device,
            )

    def action_forget_device(self) -> None:
        self._run(self._forget, name="forget", exclusive=True)

    async def _forget(self) -> None:
        question = ConfirmScreen(
            "Forget this device?",
            "The server stops trusting this device for good: it can no longer pair applications or decide "
            "requests, and its pending requests are denied. The applications it paired keep working. Its key is "
            "deleted here and the app closes.",
            confirm="Forget",
        )
        if not await self.push_screen_wait(question):
            return
        with suppress(DeviceRevokedError):  # revoked on the server already: only the local key is left to delete
            await self.api.forget()
        self.keystore.wipe()
        self.exit(message="This device was forgotten: its key is deleted. Run `vouchsim companion` to enrol again.")

    def action_reconnect(self) -> None:
        if self.home is not None:
            self._follow_delegations()
            self._load_connections()


def run(config: CompanionConfig) -> int:
    """Run the TUI until the person quits; the exit status for the CLI."""
    CompanionApp(config).run()
    return 0
