"""Scan → who is asking → PIN (the focus starts there) → the code, docked until used or expired; a decline in red;
every way a scan fails says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from companion.tests.fakes import error, png_bytes, qr_image
from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import PIN, FakeClock, ManualSleep, UiFakeServer, settle, text
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.pairing import PairingConfirmScreen
from vouchsim.companion.screens.scan import ScanView
from vouchsim.companion.widgets.code_dock import PairingCodeDock
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.pairing_code import banner

pytestmark = pytest.mark.anyio

QR_FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "qr"


def qr_file(folder: Path, uri: str, name: str = "qr.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(png_bytes(qr_image(uri)))
    return path


async def open_scan(pilot: Pilot[Any], app: CompanionApp, mode: str = "file") -> ScanView:
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.link.state == "online")
    await pilot.press("s")
    view = app.screen.query_one(ScanView)
    if mode != "file":
        await pilot.click(f"#mode-{mode}")
    return view


async def scan(pilot: Pilot[Any], app: CompanionApp, value: str, mode: str = "file") -> ScanView:
    view = await open_scan(pilot, app, mode)
    view.query_one("#scan-input", Input).value = value
    await pilot.click("#scan-go")
    return view


def claims(server: UiFakeServer) -> list[str]:
    return [r.url.path for r in server.requests if r.url.path.startswith("/device/pairings")]


async def test_a_scanned_file_asks_who_with_the_pin_then_docks_the_code_until_it_is_used(
    app_for: AppFactory, server: UiFakeServer, sleep: ManualSleep, tmp_path: Path
) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(qr_file(tmp_path, uri)))
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        confirm = app.screen
        assert app.focused is not None and app.focused.id == "pin"  # digits typed at once land in the PIN field
        shown = " ".join(text(w) for w in confirm.query(".field-value"))
        assert "Acme Agent Client  (vsc_1)" in shown
        assert "127.0.0.1" in shown
        assert "identity, delegation" in shown
        assert "2026-11-25 15:00 UTC" in shown
        assert text(confirm.query_one("#pairing-expiry")) == "in 4:00"

        await pilot.press(*"1111", "enter")
        await pilot.pause()
        assert "Wrong PIN. 2 tries left" in text(confirm.query_one("#pin-error"))
        assert server.pairing("pair_1").status == "claimed"  # nothing approved on a wrong PIN

        await pilot.press(*PIN, "enter")
        home = app.screen
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and home.code is not None)
        assert isinstance(home, HomeScreen)
        assert server.pairing("pair_1").status == "approved"
        dock = home.query_one(PairingCodeDock)  # docked, not a dialog: nothing is covered
        assert dock.display
        assert text(dock.query_one("#code-text")) == "BCDF-GHJK"
        assert text(dock.query_one("#pairing-code")) == banner("BCDF-GHJK")
        assert text(dock.query_one("#code-expiry")) == "valid for 3:00"
        assert view.status.kind == "done"
        assert home.hint.text.startswith("Type the code BCDF-GHJK into the authorization page")

        # The person types it in the browser: the server now lists a connection of that client, and the code goes.
        server.add_connection(next(iter(server.devices)), "Acme Agent Client")
        await settle(pilot, lambda: sleep.sleeping)
        sleep.wake()
        await settle(pilot, lambda: home.code is None)
        assert not dock.display
        assert view.status.text == "Paired Acme Agent Client: it is listed under Connections."
        assert [c.client_name for c in home.connections] == ["Acme Agent Client"]


async def test_a_docked_code_that_expires_unused_goes_and_says_so(
    app_for: AppFactory, server: UiFakeServer, clock: FakeClock, tmp_path: Path
) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(qr_file(tmp_path, uri)))
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        await pilot.press(*PIN, "enter")
        home = app.screen
        assert isinstance(home, HomeScreen)
        await settle(pilot, lambda: home.code is not None)
        clock.advance(181)
        home.query_one("#code-expiry", Countdown).tick()
        await settle(pilot, lambda: home.code is None)
        assert view.status.kind == "error"
        assert view.status.text == "The pairing code for Acme Agent Client expired before it was used."
        assert home.hint.kind == "problem"


async def test_enter_without_a_pin_approves_nothing_and_escape_declines_in_red(
    app_for: AppFactory, server: UiFakeServer, tmp_path: Path
) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(qr_file(tmp_path, uri)))
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        confirm = app.screen
        await pilot.press("enter")  # in the empty PIN field
        await pilot.pause()
        assert text(confirm.query_one("#pin-error")) == "Type your PIN to approve."
        assert server.pairing("pair_1").status == "claimed"
        await pilot.press("escape")
        await settle(pilot, lambda: server.pairing("pair_1").status == "declined")
        await settle(pilot, lambda: view.status.kind == "error")  # red, not a green tick
        assert view.status.text == "Declined Acme Agent Client: the application is told access was denied."
        assert "Reload the application's authorization page" in view.status.hint
        assert not any(path.endswith("/approve") for path in claims(server))


async def test_three_wrong_pins_decline_the_pairing(app_for: AppFactory, server: UiFakeServer, tmp_path: Path) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(qr_file(tmp_path, uri)))
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        for _ in range(3):
            await pilot.press(*"9999", "enter")
        await settle(pilot, lambda: server.pairing("pair_1").status == "declined")
        await settle(pilot, lambda: view.status.kind == "error")
        assert view.status.text.startswith("Too many wrong PINs: declined")


async def test_a_request_that_expires_on_screen_is_neither_approved_nor_declined(
    app_for: AppFactory, server: UiFakeServer, clock: FakeClock, tmp_path: Path
) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(qr_file(tmp_path, uri)))
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        clock.advance(4 * 60)  # the fake's pairing expires at 15:05
        app.screen.query_one("#pairing-expiry", Countdown).tick()
        await settle(pilot, lambda: view.status.kind == "error")
        assert "expired before it was approved" in view.status.text
        assert server.pairing("pair_1").status == "claimed"
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("not-a-qr.png", "No QR code was found in the image."),
        ("not-ours.png", "This QR code is not a Vouchsim pairing QR (it reads 'https://example.com/hello')."),
        (
            "other-issuer.png",
            "This pairing QR belongs to https://elsewhere.example, but this companion is enrolled with "
            "http://127.0.0.1:8741.",
        ),
        ("not-an-image.png", "That is not an image this companion can read"),
        ("missing.png", "Cannot read"),
    ],
)
async def test_a_picture_that_is_no_pairing_qr_says_why_before_any_request(
    app_for: AppFactory, server: UiFakeServer, fixture: str, message: str
) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(QR_FIXTURES / fixture))
        await settle(pilot, lambda: view.status.kind == "error")
        assert message in view.status.text
        assert message in text(view.query_one("#scan-status"))
        assert claims(server) == []
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (error(410, "pairing_expired", "This pairing has expired."), "This pairing has expired."),
        (error(409, "pairing_already_claimed", "Another device claimed it."), "Another device claimed it."),
    ],
)
async def test_a_pairing_the_server_refuses_says_why(
    app_for: AppFactory, server: UiFakeServer, tmp_path: Path, answer: Any, message: str
) -> None:
    uri = server.open_pairing()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await open_scan(pilot, app)
        server.next_error = answer
        view.query_one("#scan-input", Input).value = str(qr_file(tmp_path, uri))
        await pilot.click("#scan-go")
        # The status line and the notification are posted separately: wait for both.
        await settle(
            pilot,
            lambda: view.status.kind == "error" and any(message in n.message for n in app._notifications),
        )
        assert view.status.text == message
        assert isinstance(app.screen, HomeScreen)


async def test_an_image_url_is_fetched_and_scanned(app_for: AppFactory, server: UiFakeServer) -> None:
    server.images["/qr.png"] = png_bytes(qr_image(server.open_pairing()))
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await scan(pilot, app, "http://images.test/qr.png", mode="url")
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        assert server.pairing("pair_1").status == "claimed"


async def test_a_url_that_is_not_http_is_refused_in_the_form(app_for: AppFactory, server: UiFakeServer) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, "file:///etc/passwd", mode="url")
        await pilot.pause()
        assert view.status.kind == "error"
        assert "starts with http:// or https://" in view.status.text
        assert not [r for r in server.requests if r.url.host != "127.0.0.1"]


async def test_a_watched_folder_scans_each_new_picture_but_not_those_already_there(
    app_for: AppFactory, server: UiFakeServer, sleep: ManualSleep, tmp_path: Path
) -> None:
    camera = tmp_path / "camera"
    qr_file(camera, server.open_pairing(), "old.png")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(camera), mode="folder")
        await settle(pilot, lambda: sleep.sleeping)  # took stock of the folder, waiting for the next poll
        assert view.watching == camera
        assert "Watching" in text(view.query_one("#scan-help"))
        qr_file(camera, server.open_pairing(), "new.png")
        sleep.wake()
        await settle(pilot, lambda: isinstance(app.screen, PairingConfirmScreen))
        assert server.pairing("pair_2").status == "claimed"
        assert server.pairing("pair_1").status == "pending"  # the picture that was already there

        await pilot.press("escape")  # decline
        await settle(pilot, lambda: server.pairing("pair_2").status == "declined")
        await pilot.click("#scan-go")  # "Stop watching"
        await pilot.pause()
        assert view.watching is None
        assert not view.query_one("#scan-input", Input).disabled


async def test_watching_a_folder_that_does_not_exist_says_so(app_for: AppFactory, tmp_path: Path) -> None:
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        view = await scan(pilot, app, str(tmp_path / "nowhere"), mode="folder")
        await settle(pilot, lambda: view.status.kind == "error")
        assert "does not exist" in view.status.text
        assert view.watching is None
