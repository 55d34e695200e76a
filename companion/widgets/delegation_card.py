"""A pending delegation as a card: who asks, for what, why, the binding message, and time left."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Static

from vouchsim.companion.core.decisions import Decision
from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import clean, clean_list
from vouchsim.companion.messages import DecisionChosen, DelegationLapsed
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.field_row import FieldRow


class DelegationCard(Vertical, can_focus=True):
    """Approve or deny by its buttons, or by key (a / d: the home screen's, on the selected card, else the newest);
    nothing is signed here: the card only reports the choice (`DecisionChosen`) and the app asks for confirmation."""

    def __init__(self, delegation: Delegation, *, clock: Clock) -> None:
        super().__init__(classes="card")
        self.delegation = delegation
        self._clock = clock
        self.lapsed = False

    def compose(self) -> ComposeResult:
        d = self.delegation
        with Horizontal(classes="card-head"):
            yield Static(Content.styled(clean(d.client_name), "bold"), classes="card-client")
            yield Countdown(d.expires, clock=self._clock, prefix="expires in ", classes="card-expiry")
        yield Static(
            Content.assemble(
                ("asks to act for you at ", "dim"),
                (clean(d.audience_name), "bold"),
                (f"  {clean(d.audience_id)}", "dim"),
            ),
            classes="card-audience",
        )
        yield FieldRow("Scopes", clean_list(d.scopes, empty="(none)"), classes="card-scopes")
        yield FieldRow("Purpose", clean(d.purpose), classes="card-purpose")
        yield FieldRow("Binding", clean(d.binding_message), classes="card-binding")
        with Horizontal(classes="card-actions"):
            yield Static(Content.styled(f"{clean(d.client_id)} · {clean(d.delegation_id)}", "dim"), classes="card-ids")
            yield Button("Deny", id="deny", variant="error", compact=True)
            yield Button("Approve", id="approve", variant="success", compact=True)

    @on(Button.Pressed, "#approve")
    def _approve_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose("approve")

    @on(Button.Pressed, "#deny")
    def _deny_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose("deny")

    def action_choose(self, decision: Decision) -> None:
        if not self.lapsed:
            self.post_message(DecisionChosen(self.delegation, decision))

    @on(Countdown.Elapsed)
    def _elapsed(self, event: Countdown.Elapsed) -> None:
        event.stop()
        self.lapsed = True
        self.add_class("-lapsed")
        for button in self.query(Button):
            button.disabled = True
        self.post_message(DelegationLapsed(self.delegation))
