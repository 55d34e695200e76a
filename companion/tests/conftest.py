"""Shared fixtures for the companion's tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import textual.app
import textual.pilot
from textual._context import active_app
from textual.screen import Screen

from companion.tests.fakes import FakeDeviceServer

IDLE_STEP = 0.002  # s: one sleep of `settled`
IDLE_CPU = IDLE_STEP / 20  # the most process CPU time a step may take and count as idle (Textual's own ratio)


@pytest.fixture(autouse=True)
def pilot_waits_for_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pilot's waits, without their 20 ms time window.

    Textual (8.2.8) waits for the app after each key `Pilot.press` sends (twice, in `App._press_keys`), in each
    `pause()` and four times per click, with `textual._wait.wait_for_idle`: 20 ms sleeps until one passes with
    under 1 ms of process CPU, a window long enough to hold a screen refresh (60 a second), so that a click aims
    where the screen shows its target. Serially the 77 Pilot tests took 62-66 s, 39 s of it in those waits and
    half of that asleep (226 key waits 17.6 s, 288 others 21.5 s). Only shortening the sleeps (2 ms) made clicks
    miss now and then (2 runs of test_scan.py in 10): a key had switched tabs and no refresh had laid them out.

    `settled` sleeps 2 ms at a time until the app is idle *and* its screen has nothing left to paint, and paints
    it when it has: it waits for the refresh itself, not for a window long enough to hold one (a run finds an
    idle app with changes unpainted ~280 times). The same tests take 46-47 s, about their CPU time.
    """
    monkeypatch.setattr(textual.app, "wait_for_idle", settled, raising=True)  # the name `_press_keys` calls
    monkeypatch.setattr(textual.pilot, "wait_for_idle", settled, raising=True)  # `pause()`'s, and the others'


async def settled(min_sleep: float = 1 / 50, max_sleep: float = 1.0) -> None:
    """Until the app is idle with its screen painted, or for `max_sleep` seconds (then on regardless); the
    signature and defaults of Textual's `wait_for_idle`."""
    start = time.monotonic()
    while True:
        cpu, slept = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_STEP)
        now = time.monotonic()
        if now - start >= max_sleep:
            return
        # A step that overran had the process off the CPU (a busy machine): its CPU time says nothing.
        idle = now - slept < 2 * IDLE_STEP and time.process_time() - cpu < IDLE_CPU
        if idle and now - start >= min_sleep:
            screen = _unpainted_screen()
            if screen is None:
                return
            # What the screen's 60 fps timer would paint within 1/60 s, now (as `Pilot.pause()` ends); the next
            # steps wait for what painting set off (resizes, after-refresh callbacks, another refresh).
            screen._on_timer_update()


def _unpainted_screen() -> Screen[Any] | None:
    """The current screen if it has changes to paint: what `Screen._on_idle` checks before it starts the timer."""
    app = active_app.get()
    if not app.is_running:
        return None
    screen = app.screen
    changed = (
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._recompose_required
        or screen._dirty_widgets
    )
    return screen if changed else None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> FakeDeviceServer:
    return FakeDeviceServer()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
