"""Shared fixtures for the companion's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from companion.tests.fakes import FakeDeviceServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> FakeDeviceServer:
    return FakeDeviceServer()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
