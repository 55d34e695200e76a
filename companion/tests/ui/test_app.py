"""The app as a whole: a server that goes away is shown and retried, never a traceback; help; themes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from textual.widgets import Input, Markdown, TabbedContent

from companion.tests.fakes import error
from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import ManualSleep, UiFakeServer, settle, text
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.screens.confirm import ConfirmScreen
from vouchsim.companion.screens.help import HelpScreen
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.widgets.status_bar import StatusBar

pytestmark = pytest.mark.anyio


async def test_a_server_that_goes_away_is_shown_and_retried_with_backoff(
    app_for: AppFactory, server: UiFakeServer, sleep: ManualSleep
) -> None:
    server.stream_connects = [httpx.ConnectError("Connection refused"), "drop", httpx.ConnectError("refused")]
    server.add_delegation()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: app.link.state == "offline")
        bar = app.screen.query_one(StatusBar)
        await pilot.pause()
        assert text(bar.query_one("#status-link")) == "▲ offline"
        assert "Could not connect to the server at http://127.0.0.1:8741." in text(bar.query_one("#status-detail"))
        assert "Retrying in 0.5 s" in app.link.detail
        assert sleep.delays == [0.5]

        sleep.wake()  # the stream opens, then the connection breaks
        await settle(pilot, lambda: len(sleep.delays) == 2)
        assert app.link.state == "offline"
        assert sleep.delays == [0.5, 0.5]  # it had opened: the backoff starts again
        assert any(n.title == "Lost the server" for n in app._notifications)

        sleep.wake()  # refused again: the delay grows
        await settle(pilot, lambda: len(sleep.delays) == 3)
        assert sleep.delays[-1] == 1.0

        sleep.wake()
        await settle(pilot, lambda: app.link.state == "online")
        await pilot.pause()
        assert text(bar.query_one("#status-link")) == "● live"
        assert any(n.title == "Back online" for n in app._notifications)
        assert server.streams_opened == 4
        assert app.return_code is None  # still running: no traceback, no exit


async def test_a_server_error_is_retried_but_a_refusal_waits_for_the_person(
    app_for: AppFactory, server: UiFakeServer, sleep: ManualSleep
) -> None:
    server.stream_connects = [error(503, "unavailable", "Down for maintenance."), error(401, "invalid_signature")]
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: app.link.state == "offline")
        assert "503" in app.link.detail
        sleep.wake()
        await settle(pilot, lambda: app.link.state == "refused")
        assert "Press r to retry." in app.link.detail
        assert sleep.delays == [0.5]  # a refusal is not retried by itself
        await pilot.press("r")
        await settle(pilot, lambda: app.link.state == "online")


async def test_a_device_revoked_while_watching_is_shown_as_revoked(
    app_for: AppFactory, server: UiFakeServer, sleep: ManualSleep
) -> None:
    server.stream_connects = ["revoked"]
    app = app_for()
    async with app.run_test(size=(120, 32)) as pilot:
        await settle(pilot, lambda: app.link.state == "revoked")
        await pilot.pause()
        bar = app.screen.query_one(StatusBar)
        assert text(bar.query_one("#status-link")) == "✖ DEVICE REVOKED"
        assert "vouchsim companion forget" in text(bar.query_one("#status-detail"))
        assert any(n.title == "Live updates stopped" for n in app._notifications)
        assert isinstance(app.screen, HomeScreen)
        assert "revoked on the server" in app.screen.hint.text
        assert sleep.delays == []  # a revocation is final: never retried by itself
        assert app.return_code is None


async def test_forget_this_device_from_the_command_palette(
    app_for: AppFactory, server: UiFakeServer, state_dir: Path
) -> None:
    app = app_for()
    async with app.run_test(size=(120, 32)) as pilot:
        await settle(pilot, lambda: app.link.state == "online")
        assert "Forget this device" in [command.title for command in app.get_system_commands(app.screen)]
        app.action_forget_device()
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await settle(pilot, lambda: app.return_code is not None)
    [device] = server.devices.values()
    assert device.revoked_at is not None  # revoked on the server first
    assert Keystore(state_dir).read_enrolment() is None and Keystore(state_dir).read_key() is None


async def test_help_opens_and_closes(app_for: AppFactory) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "trusted phone" in app.screen.query_one(Markdown).source
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


async def test_t_switches_between_the_light_and_dark_themes(app_for: AppFactory) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.theme == "vouchsim-dark"
        await pilot.press("t")
        assert app.theme == "vouchsim-light"
        assert not app.current_theme.dark
        await pilot.press("t")
        assert app.theme == "vouchsim-dark"


async def test_q_quits(app_for: AppFactory) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0


async def test_escape_leaves_a_text_field_so_letters_are_shortcuts_again(app_for: AppFactory) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        home = app.screen
        assert isinstance(home, HomeScreen)
        await pilot.press("s")
        field = home.query_one("#scan-input", Input)
        assert app.focused is field
        await pilot.press("i")
        assert field.value == "i"  # typed, not a shortcut
        assert home.view == "scan"
        await pilot.press("escape", "i")
        assert home.query_one(TabbedContent).active == "inbox"
