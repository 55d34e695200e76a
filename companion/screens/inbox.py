"""The inbox: pending delegation requests, live, one card each, newest first."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.widgets.delegation_card import DelegationCard

EMPTY = (
    "No requests waiting.\n\n"
    "When an agent asks to act for you, its request appears here at once: check the binding message "
    "against what the agent shows, then approve (a) or deny (d). With several, ↑ ↓ or tab choose one."
)


class InboxView(VerticalScroll):
    """Shows `delegations` (the pending ones, set by the home screen); cards are added and removed one by
    one, so a card being read keeps its place, focus and countdown while others come and go."""

    BINDINGS = [
        Binding("up", "move(-1)", "Newer", show=False),
        Binding("down", "move(1)", "Older", show=False),
    ]

    delegations: reactive[tuple[Delegation, ...]] = reactive((), init=False)

    def __init__(self, *, clock: Clock, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock

    def compose(self) -> ComposeResult:
        yield Static(EMPTY, id="inbox-empty", markup=False)

    def on_mount(self) -> None:
        self.watch_delegations(self.delegations)

    @property
    def cards(self) -> list[DelegationCard]:
        """Newest first."""
        return list(self.query(DelegationCard))

    @property
    def selected(self) -> DelegationCard | None:
        """The card the person moved to (it, or one of its buttons, has the focus)."""
        return next((card for card in self.cards if card.has_focus_within), None)

    def action_move(self, step: int) -> None:
        """Select the newer (-1) or older (+1) request; `a` / `d` then act on it."""
        cards = self.cards
        if not cards:
            return
        current = self.selected
        at = cards.index(current) + step if current is not None else 0
        card = cards[max(0, min(len(cards) - 1, at))]
        card.focus()
        card.scroll_visible()

    def watch_delegations(self, delegations: tuple[Delegation, ...]) -> None:
        wanted = {d.delegation_id for d in delegations}
        kept: list[DelegationCard] = []
        for card in self.cards:
            if card.delegation.delegation_id in wanted:
                kept.append(card)
            else:
                card.remove()
        shown = {card.delegation.delegation_id for card in kept}
        new = [DelegationCard(d, clock=self._clock) for d in delegations if d.delegation_id not in shown]
        if new:
            # Newest first: requests arriving now go above the ones already being read.
            self.mount_all(new, before=kept[0] if kept else None)
        self.query_one("#inbox-empty").display = not delegations
