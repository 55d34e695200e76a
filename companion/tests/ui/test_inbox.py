"""The inbox: requests arrive live; approve and deny by key or click, after a modal that shows what is
signed; decided, expired and revoked requests move to the history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import FakeClock, UiFakeServer, settle, text
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.screens.confirm import ConfirmScreen
from vouchsim.companion.screens.delegation import DelegationConfirmScreen
from vouchsim.companion.screens.history import HistoryView
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.screens.inbox import InboxView
from vouchsim.companion.widgets.countdown import Countdown
from vouchsim.companion.widgets.delegation_card import DelegationCard

pytestmark = pytest.mark.anyio


def home(app: CompanionApp) -> HomeScreen:
    assert app.home is not None
    return app.home


async def online(pilot: Pilot[Any], app: CompanionApp) -> InboxView:
    await settle(pilot, lambda: isinstance(app.screen, HomeScreen) and app.link.state == "online")
    return app.screen.query_one(InboxView)


async def test_requests_appear_live_as_cards_with_everything_to_decide_on(
    app_for: AppFactory, server: UiFakeServer
) -> None:
    server.add_delegation()  # waiting before the app started: replayed
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        server.add_delegation(
            client_name="Zed Agent",
            audience_id="aud_test_mail",
            audience_name="Test mail",
            scopes=["mail.read"],
            purpose="Summarise today's mail.",
            binding_message="quiet-otter-7",
        )
        await settle(pilot, lambda: len(inbox.cards) == 2)
        newest = inbox.cards[0]
        assert newest.delegation.delegation_id == "dlg_2"  # newest first
        shown = " ".join(text(w) for w in newest.query(".field-value"))
        assert "mail.read" in shown
        assert "Summarise today's mail." in shown
        assert "quiet-otter-7" in shown
        assert "Zed Agent" in text(newest.query_one(".card-client"))
        assert "Test mail" in text(newest.query_one(".card-audience"))
        assert text(newest.query_one(Countdown)) == "expires in 5:00"
        assert str(home(app).query_one(TabbedContent).get_tab("inbox").label) == "Inbox (2)"


async def test_approve_by_click_shows_the_signed_statement_then_sends_it(
    app_for: AppFactory, server: UiFakeServer
) -> None:
    record = server.add_delegation()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        await pilot.click("#approve")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        modal = app.screen
        # The choice was made already (Approve): the dialog's focus is on signing it, Escape goes back.
        assert app.focused is not None and app.focused.id == "confirm"
        statement = text(modal.query_one("#statement"))
        prefix, _, canonical = statement.partition("\n")
        assert prefix == "vouchsim-delegation-decision-v1"
        fields = json.loads(canonical)
        assert fields["decision"] == "approve"
        assert fields["binding_message"] == "amber-falcon-42"
        assert fields["scopes"] == ["payments.identity", "payments.prepare"]
        assert record["status"] == "pending"  # nothing sent yet

        await pilot.click("#confirm")
        await settle(pilot, lambda: record["status"] == "approved")
        # The server verified the signature over exactly the statement the modal showed.
        assert record["evidence"]["statement"].decode() == statement
        await settle(pilot, lambda: not inbox.cards and bool(home(app).history))
        assert home(app).history[0].status == "approved"


async def test_deny_by_keypress(app_for: AppFactory, server: UiFakeServer) -> None:
    record = server.add_delegation()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        inbox.cards[0].focus()
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        assert '"decision":"deny"' in text(app.screen.query_one("#statement"))
        await pilot.press("enter")  # "Sign and deny" has the focus
        await settle(pilot, lambda: record["status"] == "denied")
        await settle(pilot, lambda: not inbox.cards)
        assert [d.status for d in home(app).history] == ["denied"]


async def test_a_and_d_work_from_the_inbox_without_a_tab_on_the_newest_or_the_selected_request(
    app_for: AppFactory, server: UiFakeServer, clock: FakeClock
) -> None:
    """No card has the focus: `a` approves the newest. After ↓, it is the selected (older) one that `d` denies.
    The footer lists both keys while there is something to decide, and the hint bar names the next step."""
    older = server.add_delegation(binding_message="quiet-otter-7")
    clock.advance(5)
    newest = server.add_delegation(client_name="Zed Agent")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 2)
        screen = home(app)
        screen.set_focus(None)
        await pilot.pause()
        keys = {binding.key for (_, binding, enabled, _) in screen.active_bindings.values() if enabled}
        assert {"a", "d"} <= keys
        assert screen.hint.text.startswith("a approves, d denies the request of Zed Agent")
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        assert app.screen.delegation.delegation_id == newest["delegation_id"]
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("down", "down")  # the newest, then the older one
        assert inbox.selected is not None and inbox.selected.delegation.delegation_id == older["delegation_id"]
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        await pilot.press("enter")
        await settle(pilot, lambda: older["status"] == "denied")
        assert newest["status"] == "pending"


async def test_going_back_from_the_modal_sends_nothing(app_for: AppFactory, server: UiFakeServer) -> None:
    record = server.add_delegation()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        inbox.cards[0].focus()
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert record["status"] == "pending"
        assert not [r for r in server.requests if r.url.path.endswith("/decision")]
        assert len(inbox.cards) == 1


async def test_a_request_decided_elsewhere_first_is_reported_and_moves_to_the_history(
    app_for: AppFactory, server: UiFakeServer
) -> None:
    record = server.add_delegation()

    def another_device_denied(rec: dict[str, Any]) -> None:
        rec["status"] = "denied"

    server.before_decision = another_device_denied
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        await pilot.click("#approve")
        await settle(pilot, lambda: isinstance(app.screen, DelegationConfirmScreen))
        await pilot.click("#confirm")
        await settle(pilot, lambda: any("no longer pending" in n.message for n in app._notifications))
        await settle(pilot, lambda: not inbox.cards)
        assert record["status"] == "denied"
        assert [d.status for d in home(app).history] == ["denied"]


async def test_a_request_whose_countdown_runs_out_moves_to_the_history_as_expired(
    app_for: AppFactory, server: UiFakeServer, clock: FakeClock
) -> None:
    server.add_delegation()
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        countdown = inbox.cards[0].query_one(Countdown)
        clock.advance(230)
        countdown.tick()
        assert text(countdown) == "expires in 1:10"
        assert not countdown.has_class("-urgent")
        clock.advance(20)
        countdown.tick()
        assert countdown.has_class("-urgent")
        assert len(inbox.cards) == 1
        clock.advance(50)
        countdown.tick()
        await settle(pilot, lambda: not inbox.cards)
        assert [d.status for d in home(app).history] == ["expired"]


async def test_an_approved_delegation_can_be_revoked_from_the_history(
    app_for: AppFactory, server: UiFakeServer, clock: FakeClock
) -> None:
    record = server.add_delegation(status="approved", decided_at="2026-11-25T15:00:30Z", decided_by="dev_1")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        await online(pilot, app)
        await pilot.press("h")
        history = app.screen.query_one(HistoryView)
        await settle(pilot, lambda: len(history.delegations) == 1)
        history.query_one("#history-table").focus()
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await settle(pilot, lambda: record["status"] == "revoked")
        await settle(pilot, lambda: [d.status for d in history.delegations] == ["revoked"])


async def test_untrusted_text_is_shown_as_it_is_never_as_markup(app_for: AppFactory, server: UiFakeServer) -> None:
    server.add_delegation(client_name="[b]Bank[/b]\x1b[2J", purpose="[link=http://evil]click[/link]")
    app = app_for()
    async with app.run_test(size=(100, 32)) as pilot:
        inbox = await online(pilot, app)
        await settle(pilot, lambda: len(inbox.cards) == 1)
        card: DelegationCard = inbox.cards[0]
        assert text(card.query_one(".card-client")) == "[b]Bank[/b]?[2J"
        assert "[link=http://evil]click[/link]" in " ".join(text(w) for w in card.query(".field-value"))
