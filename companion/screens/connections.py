"""The runtime connections: the clients paired through this device; unpair one (u)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from vouchsim.companion.core.schemas import Connection
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import ago, clean, clean_list, fit, short_instant
from vouchsim.companion.messages import UnpairChosen

CLIENT, SCOPES, PAIRED, USED, STATUS = 22, 22, 12, 11, 21
COLUMNS = (("Client", CLIENT), ("Scopes", SCOPES), ("Paired (UTC)", PAIRED), ("Last used", USED), ("Status", STATUS))


class ConnectionsView(Vertical):
    BINDINGS = [Binding("u", "unpair", "Unpair")]

    connections: reactive[tuple[Connection, ...]] = reactive((), init=False)

    def __init__(self, *, clock: Clock, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock

    def compose(self) -> ComposeResult:
        yield Static(
            "No connections yet. Scan a pairing QR (s) to connect an application.", id="connections-empty", markup=False
        )
        table: DataTable[str | Text] = DataTable(id="connections-table", cursor_type="row", zebra_stripes=True)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        yield table

    def on_mount(self) -> None:
        self.watch_connections(self.connections)

    def watch_connections(self, connections: tuple[Connection, ...]) -> None:
        table: DataTable[str | Text] = self.query_one("#connections-table", DataTable)
        selected = self.selected
        now = datetime.fromtimestamp(self._clock(), UTC)
        table.clear()
        for c in connections:
            status = (
                Text("active", "bold green")
                if c.revoked_at is None
                else Text(f"unpaired {short_instant(c.revoked_at)}", "dim")
            )
            table.add_row(
                Text(fit(clean(c.client_name), CLIENT)),
                Text(fit(clean_list(c.scopes), SCOPES)),
                short_instant(c.created_at),
                ago(c.last_used_at, now),
                status,
                key=c.connection_id,
            )
        if selected is not None and selected.connection_id in {c.connection_id for c in connections}:
            table.move_cursor(row=table.get_row_index(selected.connection_id))
        table.display = bool(connections)
        self.query_one("#connections-empty").display = not connections

    @property
    def selected(self) -> Connection | None:
        table: DataTable[str | Text] = self.query_one("#connections-table", DataTable)
        if not self.connections or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((c for c in self.connections if c.connection_id == key), None)

    def action_unpair(self) -> None:
        connection = self.selected
        if connection is None:
            return
        if connection.revoked_at is not None:
            self.notify(f"{clean(connection.client_name)} is already unpaired.")
            return
        self.post_message(UnpairChosen(connection))
