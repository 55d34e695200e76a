"""First run: enrol this device with a server and set the local PIN; then show the key's fingerprint.

The form checks what it can locally (URL shape, name length, PIN format and repetition) and reports
`EnrolmentSubmitted`; the app enrols in a worker and hands the result down (`enrolled`), or the error
(`error`). A device enrolled with the headless CLI comes here only to choose its PIN (`PinChosen`).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Center, Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from vouchsim.companion.core.client import MAX_NAME_LENGTH
from vouchsim.companion.core.config import ConfigError, normalize_server_url
from vouchsim.companion.core.keystore import Enrolment
from vouchsim.companion.core.pin import MAX_LENGTH, MIN_LENGTH, InvalidPinError, check_pin
from vouchsim.companion.core.text import clean
from vouchsim.companion.messages import EnrolmentFinished, EnrolmentSubmitted, PinChosen

INTRO = (
    "This app acts as your trusted phone. Enrolling creates a key on this computer and registers its "
    "public half with the server; the server then asks this device to approve pairings and delegations."
)
PIN_INTRO = (
    "This device is enrolled, but has no local PIN yet. The app asks for it before approving a pairing, "
    "so a QR code someone else shows you cannot link their application to your account."
)


class EnrolScreen(Screen[None]):
    busy: reactive[bool] = reactive(False, init=False)
    error: reactive[str] = reactive("", init=False)
    enrolled: reactive[Enrolment | None] = reactive(None, init=False)

    def __init__(
        self,
        *,
        server_url: str,
        device_name: str,
        key_fingerprint: str | None,
        existing: Enrolment | None = None,
    ) -> None:
        super().__init__()
        self._server_url = server_url
        self._device_name = device_name
        self._key_fingerprint = key_fingerprint
        self.existing = existing  # enrolled already (by the CLI): only the PIN is missing

    def compose(self) -> ComposeResult:
        pin_only = self.existing is not None
        with Center(), Vertical(id="enrol-panel", classes="panel"):
            yield Static("Set a local PIN" if pin_only else "Enrol this device", classes="panel-title")
            yield Static(PIN_INTRO if pin_only else INTRO, classes="panel-intro", markup=False)
            if not pin_only:
                yield Label("Server URL")
                yield Input(self._server_url, id="server-url", compact=True)
                yield Label(f"Device name (shown to you on the server, 1-{MAX_NAME_LENGTH} characters)")
                yield Input(self._device_name, id="device-name", max_length=MAX_NAME_LENGTH, compact=True)
            yield Label(f"Local PIN ({MIN_LENGTH}-{MAX_LENGTH} digits), asked before every pairing")
            with Horizontal(id="pin-row"):
                yield Input(
                    id="pin", password=True, restrict=r"[0-9]*", max_length=MAX_LENGTH, placeholder="PIN", compact=True
                )
                yield Input(
                    id="pin-again",
                    password=True,
                    restrict=r"[0-9]*",
                    max_length=MAX_LENGTH,
                    placeholder="the same again",
                    compact=True,
                )
            yield Static(self._fingerprint_line(), id="enrol-fingerprint")
            yield Static(id="enrol-error", markup=False)
            with Horizontal(classes="panel-buttons"):
                yield Button("Save PIN" if pin_only else "Enrol", id="enrol-go", variant="primary")
        with Center(), Vertical(id="enrolled-panel", classes="panel"):
            yield Static("Enrolled", classes="panel-title")
            yield Static(id="enrolled-summary", markup=False)
            yield Static(id="enrolled-fingerprint")
            yield Static(
                "The server records this fingerprint for the device: compare them if you ever doubt "
                "which device approved something.",
                classes="panel-intro",
                markup=False,
            )
            with Horizontal(classes="panel-buttons"):
                yield Button("Continue", id="enrolled-go", variant="success")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#enrolled-panel").display = False
        self.query_one("#pin" if self.existing else "#server-url", Input).focus()

    def _fingerprint_line(self) -> Content:
        if self.existing is not None:
            return Content.assemble(("Key fingerprint  ", "dim"), (self.existing.fingerprint, "bold"))
        if self._key_fingerprint is not None:
            return Content.assemble(("Key fingerprint  ", "dim"), (self._key_fingerprint, "bold"))
        return Content.styled("A new key is made for this device when you enrol.", "dim")

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "pin-again":
            self.submit()
        else:
            self.focus_next()

    @on(Button.Pressed, "#enrol-go")
    def _go(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        if self.busy:
            return
        pin = self.query_one("#pin", Input).value
        try:
            check_pin(pin)
        except InvalidPinError as exc:
            self.error = str(exc)
            return
        if pin != self.query_one("#pin-again", Input).value:
            self.error = "The two PINs differ."
            return
        if self.existing is not None:
            self.error = ""
            self.post_message(PinChosen(pin))
            return
        try:
            server = normalize_server_url(self.query_one("#server-url", Input).value)
        except ConfigError as exc:
            self.error = f"The {exc}."
            return
        name = self.query_one("#device-name", Input).value.strip()
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            self.error = f"A device name is 1 to {MAX_NAME_LENGTH} characters."
            return
        self.error = ""
        self.post_message(EnrolmentSubmitted(server, name, pin))

    def watch_busy(self, busy: bool) -> None:
        button = self.query_one("#enrol-go", Button)
        button.disabled = busy
        button.label = "Enrolling…" if busy else ("Save PIN" if self.existing else "Enrol")

    def watch_error(self, error: str) -> None:
        self.query_one("#enrol-error", Static).update(error)

    def watch_enrolled(self, enrolment: Enrolment | None) -> None:
        if enrolment is None:
            return
        self.query_one("#enrol-panel").display = False
        self.query_one("#enrolled-panel").display = True
        self.query_one("#enrolled-summary", Static).update(
            f"{clean(enrolment.name)} is enrolled with {clean(enrolment.issuer)} as {clean(enrolment.device_id)}."
        )
        self.query_one("#enrolled-fingerprint", Static).update(
            Content.assemble(("Key fingerprint  ", "dim"), (enrolment.fingerprint, "bold"))
        )
        self.query_one("#enrolled-go", Button).focus()

    @on(Button.Pressed, "#enrolled-go")
    def _continue(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(EnrolmentFinished())
