"""Connections: listed with when they were made and last used; unpair one, after a confirmation."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from companion.tests.fakes import error
from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import UiFakeServer, settle
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.screens.confirm import ConfirmScreen
from vouchsim.companion.screens.connections import ConnectionsView
from vouchsim.companion.screens.home import HomeScreen

pytestmark = pytest.mark.anyio


async def connections_tab(pilot: Pilot[Any], app: CompanionApp, rows: int) -> ConnectionsView:
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.link.state == "online")
    await pilot.press("c")
    view = app.screen.query_one(ConnectionsView)
    await settle(pilot, lambda: len(view.connections) == rows)
    view.query_one(DataTable).focus()
    return view


def rows(view: ConnectionsView) -> list[list[str]]:
    table: DataTable[Any] = view.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_connections_show_when_they_were_made_and_last_used(app_for: AppFactory, server: UiFakeServer) -> None:
    server.add_connection("dev_1", "Acme Agent Client")
    used = server.add_connection("dev_1", "Zed Agent")
    used["last_used_at"] = "2026-11-25T14:56:00Z"
    server.add_connection("dev_9", "Someone else's")  # another device's: not shown
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await connections_tab(pilot, app, 2)
        assert rows(view) == [
            ["Zed Agent", "identity, delegation", "Nov 25 15:00", "5 min ago", "active"],
            ["Acme Agent Client", "identity, delegation", "Nov 25 15:00", "never", "active"],
        ]


async def test_unpair_asks_first_then_revokes_the_connection(app_for: AppFactory, server: UiFakeServer) -> None:
    connection = server.add_connection("dev_1")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await connections_tab(pilot, app, 1)
        await pilot.press("u")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.click("#confirm")
        await settle(pilot, lambda: connection["revoked_at"] is not None)
        await settle(pilot, lambda: view.connections[0].revoked_at is not None)
        assert rows(view)[0][-1].startswith("unpaired ")
        await pilot.press("u")  # an unpaired connection cannot be unpaired again
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_cancelling_the_unpair_sends_nothing(app_for: AppFactory, server: UiFakeServer) -> None:
    connection = server.add_connection("dev_1")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await connections_tab(pilot, app, 1)
        await pilot.press("u")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # Cancel has the focus
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert connection["revoked_at"] is None
        assert not [r for r in server.requests if r.method == "DELETE"]


async def test_an_unpair_the_server_refuses_is_reported(app_for: AppFactory, server: UiFakeServer) -> None:
    server.add_connection("dev_1")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await connections_tab(pilot, app, 1)
        await pilot.press("u")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        server.next_error = error(404, "connection_not_found", "No such connection.")
        await pilot.click("#confirm")
        await settle(pilot, lambda: any("No such connection." in n.message for n in app._notifications))
        assert isinstance(app.screen, HomeScreen)
