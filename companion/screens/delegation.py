"""The last look before a decision is signed: the request, and the exact statement this device signs."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static
from textual.widgets.button import ButtonVariant

from vouchsim.companion.core.decisions import SignedDecision
from vouchsim.companion.core.keystore import Enrolment
from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import clean, clean_list
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.field_row import FieldRow

VERBS: dict[str, tuple[str, str, ButtonVariant]] = {
    "approve": ("Approve", "Sign and approve", "success"),
    "deny": ("Deny", "Sign and deny", "error"),
}


class DelegationConfirmScreen(ModalScreen[bool]):
    """True to send the signed decision, False to go back. The person already chose approve or deny (`a` / `d`):
    this is the last look at what is signed, so Enter signs (the button has the focus) and Escape goes back."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#confirm"

    def __init__(self, delegation: Delegation, signed: SignedDecision, *, device: Enrolment, clock: Clock) -> None:
        super().__init__()
        self.delegation = delegation
        self.signed = signed
        self._device = device
        self._clock = clock

    def compose(self) -> ComposeResult:
        d, signed = self.delegation, self.signed
        title, button, variant = VERBS[signed.decision]
        with Vertical(id="decision-dialog", classes=f"dialog -{signed.decision}"):
            yield Static(
                Content.assemble(
                    f"{title} ",
                    (clean(d.client_name), "bold"),
                    " acting for you at ",
                    (clean(d.audience_name), "bold"),
                    "?",
                ),
                classes="dialog-title",
            )
            yield FieldRow("Scopes", clean_list(d.scopes))
            yield FieldRow("Purpose", clean(d.purpose))
            with Horizontal(classes="field-row"):
                yield Label("Binding", classes="field-label")
                yield Static(clean(d.binding_message), markup=False, id="decision-binding")
                yield Static("  must match what the agent shows", markup=False, classes="dialog-note")
            with Horizontal(classes="field-row"):
                yield Label("Expires", classes="field-label")
                yield Countdown(d.expires, clock=self._clock, prefix="in ", id="decision-expiry")
            yield Static(
                f"Device {clean(self._device.name)} ({self._device.fingerprint}) signs these exact bytes:",
                classes="dialog-note",
                id="signs-note",
                markup=False,
            )
            with VerticalScroll(id="statement-box"):
                yield Static(signed.statement.decode("utf-8"), id="statement", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Static("enter signs · esc goes back", classes="dialog-keys", markup=False)
                yield Button("Cancel", id="cancel")
                yield Button(button, id="confirm", variant=variant)

    @on(Button.Pressed, "#confirm")
    def _confirmed(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Countdown.Elapsed, "#decision-expiry")
    def _expired(self) -> None:
        self.dismiss(False)
