"""The Timeline: the server's testbed journal, live, in the companion (a tab) and in the demo (the agent panel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from textual.app import App, ComposeResult
from textual.widgets import TabbedContent

from companion.tests.ui.conftest import AppFactory
from companion.tests.ui.fakes_ui import (
    TESTBED_TOKEN,
    FakeClock,
    FakeJournal,
    ManualSleep,
    TestbedTransport,
    UiFakeServer,
    make_app,
    settle,
)
from companion.tests.ui.scenes import scripted_agent
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.core.testbed import JournalEntry, is_step
from vouchsim.companion.demo.app import DemoApp
from vouchsim.companion.screens.home import HomeScreen
from vouchsim.companion.widgets.timeline import ERROR_STYLE, FAULT_STYLE, KIND_STYLES, Timeline, timeline_line

pytestmark = pytest.mark.anyio


def entries_of(journal: FakeJournal) -> tuple[JournalEntry, ...]:
    return tuple(msgspec.convert(e, JournalEntry) for e in journal.entries)


class TimelineApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Timeline()


def styles_of(entry: JournalEntry) -> dict[str, str]:
    """Each piece of the entry's line and its style."""
    line = timeline_line(entry)
    return {line.plain[span.start : span.end]: str(span.style) for span in line.spans}


async def test_the_widget_writes_entries_in_order_colours_kinds_and_marks_faults_and_errors() -> None:
    journal = FakeJournal()
    journal.the_flow()
    entries = entries_of(journal)
    async with TimelineApp().run_test(size=(110, 30)) as pilot:
        timeline = pilot.app.query_one(Timeline)
        assert timeline.shown == []
        timeline.entries = entries[:3]
        await pilot.pause()
        timeline.entries = entries  # a continuation: only the new ones are written
        await pilot.pause()
        shown = timeline.shown
        assert len(shown) == len(entries)
        assert [line[11:].split()[0] for line in shown] == [e.kind for e in entries]
        assert shown[0].startswith("15:00:30 ✖ mcp        401  initialize  invalid_token")
        assert shown[1].startswith("15:00:31   discovery  200  GET /.well-known/oauth-protected-resource/mcp")
        assert shown[9].startswith("15:00:39   token      200  authorization_code grant")
        assert shown[-1].rstrip() == "15:00:41 ↯ token      400  refresh_token grant  invalid_grant   fault flt_1"
        assert [line for line in shown if "↯" in line or "fault" in line] == [shown[-1]]

    refused, discovery = entries[-1], entries[1]
    assert styles_of(refused)["refresh_token grant"] == ERROR_STYLE
    assert styles_of(refused)["invalid_grant"] == ERROR_STYLE
    assert styles_of(refused)["↯"] == FAULT_STYLE
    assert styles_of(refused)[" fault flt_1 "] == FAULT_STYLE
    assert styles_of(discovery)["discovery "] == f"bold {KIND_STYLES['discovery']}"
    assert ERROR_STYLE not in styles_of(discovery).values()
    assert len({KIND_STYLES[e.kind] for e in entries}) == len({e.kind for e in entries})  # a colour per kind


def timeline_app(
    server: UiFakeServer, journal: FakeJournal, state_dir: Path, clock: FakeClock, sleep: ManualSleep, **options: Any
) -> CompanionApp:
    return make_app(
        server,
        state_dir,
        clock=clock,
        sleep=sleep,
        transport=TestbedTransport(server.transport, journal),
        testbed_token=TESTBED_TOKEN,
        **options,
    )


async def test_the_companion_follows_the_journal_live_in_a_timeline_tab(
    server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep
) -> None:
    journal = FakeJournal()
    journal.record("discovery", "GET", "/.well-known/oauth-authorization-server", 200, client_id=None)
    app = timeline_app(server, journal, state_dir, clock, sleep)
    async with app.run_test(size=(110, 32)) as pilot:
        await settle(pilot, lambda: app.home is not None and app.home.timeline_ready)
        home = app.home
        assert home is not None
        tabs = home.query_one(TabbedContent)
        assert tabs.get_tab("timeline").display
        await pilot.press("l")
        assert home.view == "timeline"
        timeline = home.query_one("#timeline-view", Timeline)
        await settle(pilot, lambda: len(timeline.shown) == 1)

        # New entries arrive while the app holds its long poll: each shows as it is recorded, in order.
        journal.the_flow()
        steps = [e for e in entries_of(journal) if is_step(e)]
        await settle(pilot, lambda: len(timeline.shown) == len(steps))
        assert [line[11:].split()[0] for line in timeline.shown] == [e.kind for e in steps]
        assert "GET /device/connections" not in "\n".join(timeline.shown)  # a device's poll is not a step
        assert timeline.shown[-1].startswith("15:00:42 ↯ token") and "fault flt_1" in timeline.shown[-1]
        reads = [r for r in journal.reads if r.url.params.get("wait")]
        assert reads and all(r.headers["Authorization"] == f"Bearer {TESTBED_TOKEN}" for r in reads)


async def test_no_timeline_tab_without_a_token_or_without_the_testbed(
    server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep, app_for: AppFactory
) -> None:
    async with app_for().run_test(size=(110, 32)) as pilot:  # no token: no tab, no request
        await settle(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
        assert not pilot.app.screen.query("#timeline")
        await pilot.press("l")
        screen = pilot.app.screen
        assert isinstance(screen, HomeScreen) and screen.view == "inbox"

    journal = FakeJournal(enabled=False)
    app = timeline_app(server, journal, state_dir, clock, sleep)
    async with app.run_test(size=(110, 32)) as pilot:
        await settle(pilot, lambda: bool(journal.reads) and app.timeline == ())
        await pilot.pause()
        home = app.home
        assert home is not None
        assert not home.query_one(TabbedContent).get_tab("timeline").display
        assert "does not run the testbed controls" in home.query_one("#timeline-view", Timeline).status
        assert len(journal.reads) == 1  # told once: no retrying against a server without it


async def test_the_demo_shows_the_timeline_under_the_agent_log(
    server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep
) -> None:
    journal = FakeJournal()
    journal.the_flow()
    app = make_app(
        server,
        state_dir,
        clock=clock,
        sleep=sleep,
        kind=DemoApp,
        server_url=server.issuer,
        camera_dir=state_dir.parent / "camera",
        auto=False,
        agent=scripted_agent,
        transport=TestbedTransport(server.transport, journal),
        testbed_token=TESTBED_TOKEN,
    )
    assert isinstance(app, DemoApp)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, lambda: app.home is not None and len(app.timeline) > 0)
        home = app.home
        assert home is not None
        timeline = home.query_one("#agent-panel #agent-timeline", Timeline)
        await settle(pilot, lambda: len(timeline.shown) == len(app.timeline))
        assert not home.query("#timeline")  # in the panel, not in a tab
        assert timeline.shown[-1].startswith("15:00:41 ↯ token      400  refresh_token grant")
