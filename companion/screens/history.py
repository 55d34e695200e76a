"""The history: decided, expired, cancelled and revoked delegations; revoke an approved one (x)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.text import clean, clean_list, fit, short_instant
from vouchsim.companion.messages import RevokeChosen

STATUS_STYLES = {
    "approved": "bold green",
    "denied": "bold red",
    "revoked": "yellow",
    "expired": "dim",
    "cancelled": "dim",
}
# (label, width): fixed widths keep the table inside a 100-column terminal; long values are cut.
STATUS, WHEN, CLIENT, AUDIENCE, SCOPES, BINDING = 9, 12, 17, 13, 18, 15
COLUMNS = (
    ("Status", STATUS),
    ("When (UTC)", WHEN),
    ("Client", CLIENT),
    ("Audience", AUDIENCE),
    ("Scopes", SCOPES),
    ("Binding", BINDING),
)


class HistoryView(Vertical):
    BINDINGS = [Binding("x", "revoke", "Revoke")]

    delegations: reactive[tuple[Delegation, ...]] = reactive((), init=False)

    def compose(self) -> ComposeResult:
        yield Static("Nothing decided yet.", id="history-empty", markup=False)
        table: DataTable[str | Text] = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        yield table

    def on_mount(self) -> None:
        self.watch_delegations(self.delegations)

    def watch_delegations(self, delegations: tuple[Delegation, ...]) -> None:
        table: DataTable[str | Text] = self.query_one("#history-table", DataTable)
        selected = self.selected
        table.clear()
        for d in delegations:
            decided = d.decided_at or (d.expires if d.status == "expired" else None)
            table.add_row(
                Text(clean(d.status), STATUS_STYLES.get(d.status, "")),
                short_instant(decided),
                Text(fit(clean(d.client_name), CLIENT)),
                Text(fit(clean(d.audience_name), AUDIENCE)),
                Text(fit(clean_list(d.scopes), SCOPES)),
                Text(fit(clean(d.binding_message), BINDING)),
                key=d.delegation_id,
            )
        if selected is not None and selected.delegation_id in {d.delegation_id for d in delegations}:
            table.move_cursor(row=table.get_row_index(selected.delegation_id))
        table.display = bool(delegations)
        self.query_one("#history-empty").display = not delegations

    @property
    def selected(self) -> Delegation | None:
        table: DataTable[str | Text] = self.query_one("#history-table", DataTable)
        if not self.delegations or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((d for d in self.delegations if d.delegation_id == key), None)

    def action_revoke(self) -> None:
        delegation = self.selected
        if delegation is None:
            return
        if delegation.status != "approved":
            self.notify(f"Only an approved delegation can be revoked; this one is {clean(delegation.status)}.")
            return
        self.post_message(RevokeChosen(delegation))
