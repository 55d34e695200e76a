"""The home screen: the status bar, four tabs (inbox, history, connections, scan) and the footer.

It holds what the app hands down (the link, the lists, the scan status) and binds each to the tab that
shows it; switching tabs reports `ViewShown` so the app can refresh that list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from vouchsim.companion.core.schemas import Connection, Delegation
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.messages import View, ViewShown
from vouchsim.companion.screens.connections import ConnectionsView
from vouchsim.companion.screens.history import HistoryView
from vouchsim.companion.screens.inbox import InboxView
from vouchsim.companion.screens.scan import ScanStatus, ScanView
from vouchsim.companion.widgets.status_bar import Link, StatusBar

VIEWS: tuple[View, ...] = ("inbox", "history", "connections", "scan")


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("i", "show('inbox')", "Inbox", show=False),
        Binding("h", "show('history')", "History", show=False),
        Binding("c", "show('connections')", "Connections", show=False),
        Binding("s", "show('scan')", "Scan"),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    link: reactive[Link] = reactive(Link, init=False)
    pending: reactive[tuple[Delegation, ...]] = reactive((), init=False)
    history: reactive[tuple[Delegation, ...]] = reactive((), init=False)
    connections: reactive[tuple[Connection, ...]] = reactive((), init=False)
    scan_status: reactive[ScanStatus] = reactive(ScanStatus, init=False)

    def __init__(self, *, clock: Clock, sleep: Callable[[float], Awaitable[None]], poll_interval: float) -> None:
        super().__init__()
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval

    def compose(self) -> ComposeResult:
        yield StatusBar().data_bind(HomeScreen.link)
        with TabbedContent(initial="inbox", id="tabs"):
            with TabPane("Inbox", id="inbox"):
                yield InboxView(clock=self._clock, id="inbox-view").data_bind(delegations=HomeScreen.pending)
            with TabPane("History", id="history"):
                yield HistoryView(id="history-view").data_bind(delegations=HomeScreen.history)
            with TabPane("Connections", id="connections"):
                yield ConnectionsView(clock=self._clock, id="connections-view").data_bind(HomeScreen.connections)
            with TabPane("Scan", id="scan"):
                yield ScanView(sleep=self._sleep, poll_interval=self._poll_interval, id="scan-view").data_bind(
                    status=HomeScreen.scan_status
                )
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._count_pending)

    def watch_pending(self) -> None:
        self.call_after_refresh(self._count_pending)

    def _count_pending(self) -> None:
        try:
            tab = self.query_one(TabbedContent).get_tab("inbox")
        except NoMatches:  # not composed yet: on_mount counts again
            return
        tab.label = f"Inbox ({len(self.pending)})" if self.pending else "Inbox"

    def action_leave_field(self) -> None:
        """Out of a text field, so the letter keys are shortcuts again."""
        self.set_focus(None)

    def action_show(self, view: View) -> None:
        self.query_one(TabbedContent).active = view

    @property
    def view(self) -> View:
        active = self.query_one(TabbedContent).active
        return next((v for v in VIEWS if v == active), "inbox")

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self.post_message(ViewShown(self.view))
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
        else:
            self.query_one("#scan-input").focus()
