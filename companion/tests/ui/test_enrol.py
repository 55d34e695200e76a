"""First run: enrolment with the PIN, the fingerprint shown, the local checks, and a server that fails."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from textual.widgets import Button, Input

from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import PIN, UiFakeServer, cheap_pins, settle, text
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.screens.enrol import EnrolScreen
from vouchsim.companion.screens.home import HomeScreen

pytestmark = pytest.mark.anyio


async def test_first_run_enrols_sets_the_pin_and_shows_the_fingerprint(
    app_for: AppFactory, server: UiFakeServer, state_dir: Path
) -> None:
    app = app_for(enrolled=False, server_url="http://vouch.test:8741")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        assert screen.query_one("#server-url", Input).value == "http://vouch.test:8741"  # from the settings
        assert "A new key is made" in text(screen.query_one("#enrol-fingerprint"))
        name = screen.query_one("#device-name", Input)
        name.value = ""
        name.focus()
        await pilot.press(*"QA phone", "enter")  # Enter moves to the next field
        await pilot.press(*PIN, "enter", *PIN, "enter")  # the second PIN's Enter submits
        await settle(pilot, lambda: screen.enrolled is not None)

        enrolment = Keystore(state_dir).load_identity().enrolment
        assert enrolment.server_url == "http://vouch.test:8741"
        assert [d.name for d in server.devices.values()] == ["QA phone"]
        assert enrolment.fingerprint in text(screen.query_one("#enrolled-fingerprint"))
        assert screen.query_one("#enrolled-panel").display
        pins = cheap_pins(state_dir)
        assert pins.verify(PIN)
        assert not pins.verify("1357")
        assert stat.S_IMODE(pins.path.stat().st_mode) == 0o600

        await pilot.press("enter")  # Continue has the focus
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.link.state == "online")
        assert app.link.device == "QA phone"
        assert app.link.fingerprint == enrolment.fingerprint


@pytest.mark.parametrize(
    ("url", "name", "pin", "again", "message"),
    [
        ("http://127.0.0.1:8741", "QA phone", "2468", "2469", "The two PINs differ."),
        ("http://127.0.0.1:8741", "QA phone", "246", "246", "A PIN is 4 to 12 digits."),
        ("ftp://127.0.0.1", "QA phone", "2468", "2468", "server URL must be an absolute http(s) URL"),
        ("http://127.0.0.1:8741", "   ", "2468", "2468", "A device name is 1 to 64 characters."),
    ],
)
async def test_the_form_is_checked_before_any_request(
    app_for: AppFactory, server: UiFakeServer, url: str, name: str, pin: str, again: str, message: str
) -> None:
    app = app_for(enrolled=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        for field, value in (("#server-url", url), ("#device-name", name), ("#pin", pin), ("#pin-again", again)):
            screen.query_one(field, Input).value = value
        await pilot.click("#enrol-go")
        await pilot.pause()
        assert message in text(screen.query_one("#enrol-error"))
        assert server.requests == []
        assert server.devices == {}


async def test_a_server_that_cannot_be_reached_is_reported_and_the_form_stays_usable(
    app_for: AppFactory, state_dir: Path
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    app = app_for(enrolled=False, transport=httpx.MockTransport(refuse))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        screen.query_one("#pin", Input).value = PIN
        screen.query_one("#pin-again", Input).value = PIN
        await pilot.click("#enrol-go")
        await settle(pilot, lambda: bool(screen.error))
        await settle(pilot, lambda: not screen.query_one("#enrol-go", Button).disabled)
        assert "Could not connect to the server at http://127.0.0.1:8741." in text(screen.query_one("#enrol-error"))
        assert any("Could not connect" in n.message for n in app._notifications)
        assert Keystore(state_dir).read_enrolment() is None
        assert not cheap_pins(state_dir).is_set()
        assert app.screen is screen


async def test_a_device_enrolled_by_the_cli_only_chooses_its_pin(app_for: AppFactory, state_dir: Path) -> None:
    app = app_for(pin=None)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert isinstance(screen, EnrolScreen)
        assert not screen.query("#server-url")  # nothing to enrol: only the PIN
        assert Keystore(state_dir).load_identity().enrolment.fingerprint in text(screen.query_one("#enrol-fingerprint"))
        await pilot.press(*PIN, "enter", *PIN, "enter")
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.link.state == "online")
        assert cheap_pins(state_dir).verify(PIN)
