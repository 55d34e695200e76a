"""Fixtures for the Pilot tests: a fake server and an app on a frozen clock, with a hand-driven sleep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from companion.tests.ui.fakes_ui import FakeClock, ManualSleep, UiFakeServer, make_app
from vouchsim.companion.app import CompanionApp

AppFactory = Callable[..., CompanionApp]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> ManualSleep:
    return ManualSleep()


@pytest.fixture
def server(clock: FakeClock) -> UiFakeServer:
    return UiFakeServer(clock=clock)


@pytest.fixture
def app_for(server: UiFakeServer, state_dir: Path, clock: FakeClock, sleep: ManualSleep) -> AppFactory:
    """`app_for(enrolled=..., pin=..., ...)`: a CompanionApp over the fake server."""

    def build(**options: Any) -> CompanionApp:
        return make_app(server, state_dir, clock=clock, sleep=sleep, **options)

    return build
