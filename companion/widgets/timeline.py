"""The Timeline: the flow's steps as the server's testbed journal records them, one line each, as they happen.

    15:00:01    discovery  200  GET /.well-known/oauth-protected-resource
    15:00:01    register   201  POST /oauth/register
    15:00:02 ↯ token      400  refresh_token grant  invalid_grant  fault flt_1

Each kind has its colour (discovery, register, authorize, pairing, token, revoke, introspect, mcp, device), a step
that failed (an error status, an error code, a dropped connection) is red and marked ✖, and a step a testbed fault
answered is marked ↯, with the fault's id at the end. The marks stand in a column of their own near the start, so
they show in a narrow panel too, where long lines end in "…".

It holds what it is handed (`entries`, attributes down) and writes only the new ones; the app follows the journal
(`companion.core.testbed.TestbedClient.follow`) and hands them down.
"""

from __future__ import annotations

from typing import Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import RichLog, Static

from vouchsim.companion.core.testbed import JournalEntry, is_error, outcome_label, step_label

MAX_SHOWN: Final = 500  # lines kept on screen: the journal keeps the rest
KIND_STYLES: Final = {
    "discovery": "#5B8DEF",
    "register": "#8E7CC3",
    "authorize": "#2F9E9E",
    "pairing": "#F2A541",
    "token": "#30A46C",
    "revoke": "#B07AA1",
    "introspect": "#7A8B99",
    "mcp": "#D96AA7",
    "device": "#C9A227",
}
ERROR_STYLE: Final = "bold #E5484D"
FAULT_STYLE: Final = "bold #111418 on #F2A541"
EMPTY_TEXT: Final = "Nothing yet: each request of the flow shows here as the server records it."


def timeline_line(entry: JournalEntry) -> Text:
    """One entry as the Timeline shows it: time, mark (↯ a fault, ✖ an error), kind (in its colour), status, step,
    the error code, and the fault's id."""
    failed = is_error(entry)
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(entry.at.strftime("%H:%M:%S"), style="dim")
    line.append(" ")
    if entry.fault:
        line.append("↯", style=FAULT_STYLE)
    elif failed:
        line.append("✖", style=ERROR_STYLE)
    else:
        line.append(" ")
    line.append(" ")
    line.append(f"{entry.kind:<10}", style=f"bold {KIND_STYLES.get(entry.kind, '')}".strip())
    line.append(" ")
    status, _, error = outcome_label(entry).partition(" ")
    line.append(f"{status:<3}", style=ERROR_STYLE if failed else "dim")
    line.append("  ")
    line.append(step_label(entry), style=ERROR_STYLE if failed else "")
    if error:
        line.append("  ")
        line.append(error, style=ERROR_STYLE)
    if entry.fault:
        line.append("  ")
        line.append(f" fault {entry.fault} ", style=FAULT_STYLE)
    return line


class Timeline(Vertical):
    """A title, the follow status (what the app says about the link to the journal), and the steps."""

    entries: reactive[tuple[JournalEntry, ...]] = reactive((), init=False)
    status: reactive[str] = reactive("", init=False)

    def compose(self) -> ComposeResult:
        yield Static("Timeline · what the server saw, as it happens", classes="timeline-title", markup=False)
        yield Static(EMPTY_TEXT, classes="timeline-status", markup=False)
        # wrap: each line is rendered at the log's width, so a long one ends in "…" (its Text does not wrap).
        yield RichLog(classes="timeline-log", wrap=True, markup=False, highlight=False, max_lines=MAX_SHOWN)

    @property
    def shown(self) -> list[str]:
        """The lines on screen, as plain text (what the tests read)."""
        return [strip.text for strip in self.query_one(RichLog).lines]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._written: tuple[JournalEntry, ...] = ()  # what the log shows

    def on_mount(self) -> None:
        self._show_entries()

    def watch_entries(self) -> None:
        self._show_entries()

    def watch_status(self) -> None:
        self._show_status()

    def _show_entries(self) -> None:
        """Write what is not on screen yet; what is no continuation of it (say, a window that moved on) anew."""
        if not self.is_mounted:
            return
        log = self.query_one(RichLog)
        new, old = self.entries, self._written
        if new[: len(old)] == old:
            fresh = new[len(old) :]
        else:
            log.clear()
            fresh = new
        for entry in fresh:
            log.write(timeline_line(entry))
        self._written = new
        self._show_status()

    def _show_status(self) -> None:
        if not self.is_mounted:
            return
        text = self.status or ("" if self.entries else EMPTY_TEXT)
        status = self.query_one(".timeline-status", Static)
        status.update(text)
        status.display = bool(text)
