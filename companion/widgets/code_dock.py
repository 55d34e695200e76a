"""The pairing code, docked under the tabs until it is used or expires: large, with the time it stays valid, and
never covering anything (the person may be typing it somewhere else on the same screen)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from vouchsim.companion.core.schemas import PairingApproval
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import clean
from vouchsim.companion.messages import PairingCodeLapsed
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.pairing_code import PairingCode


@dataclass(frozen=True)
class ShownCode:
    """A pairing code to show: the approval, who it is for, and where the person types it."""

    approval: PairingApproval
    client_name: str
    client_id: str
    where: str = "the authorization page"


class PairingCodeDock(Vertical):
    """Shows `shown` (set by the app); hidden while there is none. Its countdown posts `Countdown.Elapsed`."""

    shown: reactive[ShownCode | None] = reactive(None, init=False, recompose=True)

    def __init__(self, *, clock: Clock, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock

    def compose(self) -> ComposeResult:
        shown = self.shown
        self.display = shown is not None
        if shown is None:
            return
        code = PairingCode(shown.approval.pairing_code, id="pairing-code")
        yield Static(
            Content.assemble("Approved ", (clean(shown.client_name), "bold"), f": type this code into {shown.where}"),
            id="code-title",
        )
        yield code
        with Horizontal(id="code-footer"):
            yield Static(code.code, id="code-text", markup=False)
            yield Countdown(
                shown.approval.code_expires_at,
                clock=self._clock,
                prefix="valid for ",
                over="expired",
                id="code-expiry",
            )

    @on(Countdown.Elapsed, "#code-expiry")
    def _lapsed(self, event: Countdown.Elapsed) -> None:
        event.stop()
        if self.shown is not None:
            self.post_message(PairingCodeLapsed(self.shown.approval))
