"""Pairing: who is asking, confirmed with the local PIN. The code that follows is docked on the home screen
(`widgets.code_dock`), not shown in a dialog, so it stays readable while the person types it elsewhere.

A QR can be shown to someone who did not start the pairing ("scan this to win"), which is how QR-linking
attacks take over accounts; WhatsApp and Signal answer with a local confirmation, and so does this app:
the request is shown in full and approving needs the PIN set at enrolment. The focus starts in the PIN field, so
the digits typed first land there; with no PIN, Enter approves nothing (it asks for the PIN); Escape declines.
"""

from __future__ import annotations

import enum
from typing import Final

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from vouchsim.companion.core.errors import CompanionError
from vouchsim.companion.core.pin import PinStore
from vouchsim.companion.core.schemas import PairingContext
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import clean, clean_list, instant
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.field_row import FieldRow

MAX_PIN_ATTEMPTS: Final = 3


class PairingAnswer(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"
    PIN_LOCKED = "pin_locked"  # too many wrong PINs: treated as a decline
    EXPIRED = "expired"  # the request ran out while it was on screen


class PairingConfirmScreen(ModalScreen[PairingAnswer]):
    BINDINGS = [Binding("escape", "decline", "Decline")]
    AUTO_FOCUS = "#pin"

    def __init__(self, context: PairingContext, *, pins: PinStore, clock: Clock) -> None:
        super().__init__()
        self.context = context
        self._pins = pins
        self._clock = clock
        self.attempts = 0

    def compose(self) -> ComposeResult:
        c = self.context
        with Vertical(id="pairing-dialog", classes="dialog"):
            yield Static(
                Content.assemble((clean(c.client_name), "bold"), " wants to connect to your account"),
                classes="dialog-title",
            )
            yield FieldRow("Client", f"{clean(c.client_name)}  ({clean(c.client_id)})")
            if c.verified_host:  # a metadata document client: its address is the one thing the server checked
                yield FieldRow("Verified", clean(c.verified_host))
            yield FieldRow("Returns to", clean(c.redirect_host))
            yield FieldRow("Scopes", clean_list(c.scopes))
            yield FieldRow("Requested", instant(c.requested_at))
            with Horizontal(classes="field-row"):
                yield Label("Expires", classes="field-label")
                yield Countdown(c.expires_at, clock=self._clock, prefix="in ", id="pairing-expiry")
            yield Static(
                "Approve only if you started this yourself, on a screen you trust. "
                "If someone sent you this QR, decline."
                + (
                    " This application only returns to a program on the computer that started the sign-in."
                    if c.localhost_only
                    else ""
                ),
                classes="dialog-warning",
                markup=False,
            )
            with Horizontal(classes="field-row"):
                yield Label("Your PIN", classes="field-label")
                yield Input(id="pin", password=True, restrict=r"[0-9]*", max_length=12, placeholder="to approve")
            yield Static(id="pin-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Static("enter approves · esc declines", classes="dialog-keys", markup=False)
                yield Button("Decline", id="decline", variant="error")
                yield Button("Approve", id="approve", variant="success")

    def action_decline(self) -> None:
        self.dismiss(PairingAnswer.DECLINED)

    @on(Button.Pressed, "#decline")
    def _decline_pressed(self) -> None:
        self.dismiss(PairingAnswer.DECLINED)

    @on(Button.Pressed, "#approve")
    @on(Input.Submitted, "#pin")
    def _approve(self) -> None:
        field = self.query_one("#pin", Input)
        error = self.query_one("#pin-error", Static)
        if not field.value:
            error.update("Type your PIN to approve.")
            field.focus()
            return
        try:
            right = self._pins.verify(field.value)
        except CompanionError as exc:
            error.update(f"{exc} {exc.hint}".strip())
            return
        if right:
            self.dismiss(PairingAnswer.APPROVED)
            return
        self.attempts += 1
        left = MAX_PIN_ATTEMPTS - self.attempts
        if left <= 0:
            self.dismiss(PairingAnswer.PIN_LOCKED)
            return
        field.value = ""
        field.focus()
        error.update(f"Wrong PIN. {left} {'try' if left == 1 else 'tries'} left before the pairing is declined.")

    @on(Countdown.Elapsed, "#pairing-expiry")
    def _expired(self) -> None:
        self.dismiss(PairingAnswer.EXPIRED)
