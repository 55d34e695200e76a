"""The demo's TUI over the fake server, with a scripted agent: the layout the README describes (the agent panel on
the right of the tabs, not stacked on top of them), dialogs that leave the agent's log in view, the docked code, and
a failure's real reason rather than the exception group that wraps it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Input, RichLog, TabbedContent

from companion.tests.ui.scenes import CONTEXT, DEMO_SIZE, demo, demo_code, demo_pairing
from vouchsim.companion.demo.agent import AgentError
from vouchsim.companion.demo.app import DEMO_PIN, AgentPanel, DemoApp, reason_of
from vouchsim.companion.screens.pairing import PairingConfirmScreen
from vouchsim.companion.widgets.code_dock import PairingCodeDock

pytestmark = pytest.mark.anyio


async def test_the_agent_panel_stands_on_the_right_of_the_tabs(state_dir: Path) -> None:
    scene = demo(state_dir)
    async with scene.app.run_test(size=DEMO_SIZE) as pilot:
        await scene.prepare(pilot)
        home = scene.app.screen
        tabs = home.query_one(TabbedContent).region
        panel = home.query_one(AgentPanel).region
        assert panel.x >= tabs.right  # beside, not stacked above
        assert panel.y == tabs.y and panel.height >= tabs.height
        assert 0.4 * DEMO_SIZE[0] <= panel.width <= 0.5 * DEMO_SIZE[0]


async def test_a_dialog_opens_on_the_companions_side_and_leaves_the_agent_log_in_view(state_dir: Path) -> None:
    scene = demo_pairing(state_dir)
    async with scene.app.run_test(size=DEMO_SIZE) as pilot:
        await scene.prepare(pilot)
        dialog = scene.app.screen.query_one("#pairing-dialog").region
        home = scene.app.home
        assert home is not None
        log = home.query_one("#agent-log", RichLog).region
        assert dialog.right <= log.x and not dialog.overlaps(log)


async def test_the_code_is_docked_beside_the_agents_field_and_named_in_the_hint(state_dir: Path) -> None:
    scene = demo_code(state_dir)
    async with scene.app.run_test(size=DEMO_SIZE) as pilot:
        await scene.prepare(pilot)
        home = scene.app.home
        assert home is not None
        dock = home.query_one(PairingCodeDock).region
        field = home.query_one("#agent-code").region
        assert dock.height > 0 and not dock.overlaps(field)
        assert home.hint.text == "Type the code BCDF-GHJK into the agent's field on the right, then press Enter."
        assert scene.app.focused is not None and scene.app.focused.id == "agent-code"


async def test_the_autopilot_answers_a_dialog_only_once_it_has_composed(state_dir: Path) -> None:
    """With no pace (--headless), the autopilot's tick can come between a dialog's push and its compose."""
    scene = demo(state_dir)
    app = scene.app
    assert isinstance(app, DemoApp)
    async with app.run_test(size=DEMO_SIZE) as pilot:
        await scene.prepare(pilot)
        app.pace = 0.0
        dialog = PairingConfirmScreen(CONTEXT, pins=app.pins, clock=app._clock)
        mounted = app.push_screen(dialog)
        assert app.screen is dialog and not dialog.query("#pin")  # pushed, not composed
        app._autopilot()  # a tick now leaves the dialog for the next one
        await mounted
        app._autopilot()
        assert dialog.query_one("#pin", Input).value == DEMO_PIN


def test_a_failure_shows_what_the_sdks_task_group_wraps() -> None:
    refused = AgentError("Authorization refused: access_denied The pairing was declined on the trusted device.")
    wrapped = BaseExceptionGroup("unhandled errors in a TaskGroup", [asyncio.CancelledError(), refused])
    assert reason_of(BaseExceptionGroup("outer", [wrapped])) == str(refused)
    assert reason_of(TimeoutError()) == "TimeoutError"
