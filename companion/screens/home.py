"""The home screen: the status bar, the hint bar, four tabs (inbox, history, connections, scan) with the docked
pairing code under them, and the footer.

It holds what the app hands down (the link, the lists, the scan status, the hint, the code to show) and binds each
to the widget that shows it; switching tabs reports `ViewShown` so the app can refresh that list. `a` and `d` act on
the Inbox from anywhere on this screen, on the selected request or else the newest, so approving needs no Tab.

`compose_side()` yields what stands beside the tabs, on the right: nothing here; the demo's agent panel there.

With `timeline=True` (a testbed token is configured) a fifth tab, Timeline (`l`), shows the server's journal live;
it stays hidden until the app has read the journal once (`timeline_ready`), so a server without the testbed
controls shows no empty tab. Every Timeline on the screen (the tab's, the demo's agent panel's) gets the entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from vouchsim.companion.core.decisions import Decision
from vouchsim.companion.core.schemas import Connection, Delegation
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.testbed import JournalEntry
from vouchsim.companion.messages import DecisionChosen, View, ViewShown
from vouchsim.companion.screens.connections import ConnectionsView
from vouchsim.companion.screens.history import HistoryView
from vouchsim.companion.screens.inbox import InboxView
from vouchsim.companion.screens.scan import ScanStatus, ScanView
from vouchsim.companion.widgets.code_dock import PairingCodeDock, ShownCode
from vouchsim.companion.widgets.hint_bar import Hint, HintBar
from vouchsim.companion.widgets.status_bar import Link, StatusBar
from vouchsim.companion.widgets.timeline import Timeline

VIEWS: tuple[View, ...] = ("inbox", "history", "connections", "scan", "timeline")


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("d", "decide('deny')", "Deny"),
        Binding("i", "show('inbox')", "Inbox", show=False),
        Binding("h", "show('history')", "History", show=False),
        Binding("c", "show('connections')", "Connections", show=False),
        Binding("s", "show('scan')", "Scan"),
        Binding("l", "show('timeline')", "Timeline"),
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("up", "select(-1)", "Newer", show=False),  # with nothing focused: choose a request all the same
        Binding("down", "select(1)", "Older", show=False),
    ]

    link: reactive[Link] = reactive(Link, init=False)
    pending: reactive[tuple[Delegation, ...]] = reactive((), init=False)
    history: reactive[tuple[Delegation, ...]] = reactive((), init=False)
    connections: reactive[tuple[Connection, ...]] = reactive((), init=False)
    scan_status: reactive[ScanStatus] = reactive(ScanStatus, init=False)
    hint: reactive[Hint] = reactive(Hint, init=False)
    code: reactive[ShownCode | None] = reactive(None, init=False)
    timeline: reactive[tuple[JournalEntry, ...]] = reactive((), init=False)
    timeline_status: reactive[str] = reactive("", init=False)
    timeline_ready: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        poll_interval: float,
        timeline: bool = False,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval
        self.has_timeline_tab = timeline

    def compose(self) -> ComposeResult:
        yield StatusBar().data_bind(HomeScreen.link)
        yield HintBar(id="hint-bar").data_bind(HomeScreen.hint)
        with Horizontal(id="home-body"):
            with Vertical(id="companion-side"):
                with TabbedContent(initial="inbox", id="tabs"):
                    with TabPane("Inbox", id="inbox"):
                        yield InboxView(clock=self._clock, id="inbox-view").data_bind(delegations=HomeScreen.pending)
                    with TabPane("History", id="history"):
                        yield HistoryView(id="history-view").data_bind(delegations=HomeScreen.history)
                    with TabPane("Connections", id="connections"):
                        yield ConnectionsView(clock=self._clock, id="connections-view").data_bind(
                            HomeScreen.connections
                        )
                    with TabPane("Scan", id="scan"):
                        yield ScanView(sleep=self._sleep, poll_interval=self._poll_interval, id="scan-view").data_bind(
                            status=HomeScreen.scan_status
                        )
                    if self.has_timeline_tab:
                        with TabPane("Timeline", id="timeline"):
                            yield Timeline(id="timeline-view")
                yield PairingCodeDock(clock=self._clock, id="code-dock").data_bind(shown=HomeScreen.code)
            yield from self.compose_side()
        yield Footer()

    def compose_side(self) -> ComposeResult:
        """What stands on the right of the tabs (the demo's agent panel); nothing in the companion itself."""
        yield from ()

    def on_mount(self) -> None:
        self.call_after_refresh(self._count_pending)
        self.call_after_refresh(self._sync_timeline)

    def _sync_timeline(self) -> None:
        """What the app handed down before the Timelines were there."""
        self.watch_timeline(self.timeline)
        self.watch_timeline_status(self.timeline_status)
        self.watch_timeline_ready(self.timeline_ready)

    def watch_timeline(self, entries: tuple[JournalEntry, ...]) -> None:
        for timeline in self.query(Timeline):
            timeline.entries = entries

    def watch_timeline_status(self, status: str) -> None:
        for timeline in self.query(Timeline):
            timeline.status = status

    def watch_timeline_ready(self, ready: bool) -> None:
        if self.has_timeline_tab:
            try:
                tabs = self.query_one(TabbedContent)
            except NoMatches:  # not composed yet: on_mount syncs
                return
            if ready:
                tabs.show_tab("timeline")
            else:
                tabs.hide_tab("timeline")
        self.refresh_bindings()

    def watch_pending(self) -> None:
        self.call_after_refresh(self._count_pending)
        self.refresh_bindings()  # `a` and `d` show in the footer only while there is something to decide

    def _count_pending(self) -> None:
        try:
            tab = self.query_one(TabbedContent).get_tab("inbox")
        except NoMatches:  # not composed yet: on_mount counts again
            return
        tab.label = f"Inbox ({len(self.pending)})" if self.pending else "Inbox"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "decide":
            return bool(self.pending) and self.view == "inbox"
        if action == "show" and parameters == ("timeline",):
            return self.has_timeline_tab and self.timeline_ready
        return True

    def action_decide(self, decision: Decision) -> None:
        """Approve or deny the selected request, else the newest: the app asks for confirmation first."""
        inbox = self.query_one(InboxView)
        card = inbox.selected or next(iter(inbox.cards), None)
        if card is not None and not card.lapsed:
            self.post_message(DecisionChosen(card.delegation, decision))

    def action_select(self, step: int) -> None:
        if self.view == "inbox":
            self.query_one(InboxView).action_move(step)

    def action_leave_field(self) -> None:
        """Out of a text field, so the letter keys are shortcuts again."""
        self.set_focus(None)

    def action_show(self, view: View) -> None:
        if view == "timeline" and not (self.has_timeline_tab and self.timeline_ready):
            return
        self.query_one(TabbedContent).active = view

    @property
    def view(self) -> View:
        try:
            active = self.query_one(TabbedContent).active
        except NoMatches:
            return "inbox"
        return next((v for v in VIEWS if v == active), "inbox")

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self.post_message(ViewShown(self.view))
        self.refresh_bindings()
        self.focus_view()

    def focus_view(self) -> None:
        """Focus what the tab is for, so its keys show in the footer at once."""
        view = self.view
        if view == "inbox":
            cards = self.query_one(InboxView).cards
            if cards:
                cards[0].focus()
        elif view == "history":
            self.query_one("#history-table").focus()
        elif view == "connections":
            self.query_one("#connections-table").focus()
        elif view == "timeline":
            self.query_one("#timeline-view .timeline-log").focus()
        else:
            self.query_one("#scan-input").focus()
