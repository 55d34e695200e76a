"""The `vouchsim` pytest plugin (registered by the `pytest11` entry point): fixtures for a live Vouchsim
server, a trusted device, and the person at the authorization page.

- `vouchsim_server` (session): a `VouchsimServer` on a free port with SQLite in a temporary directory, or,
  when `VOUCHSIM_TEST_SERVER_URL` is set, the server already running there. `.base_url`, `.mcp_url`.
- `vouchsim_device` (function): a `TrustedDevice` enrolled with it: `.approve(id)`, `.deny(id)`,
  `.pending()`, `.auto("approve-all" | "deny-all" | rules)`, `.stop()`.
- `vouchsim_authorize` (function): `authorize(url) -> redirect_url`, completing the authorization page for
  `url` with `vouchsim_device`.

Nothing is imported or started unless a test asks for one of these fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from vouchsim.companion.testing.device import TrustedDevice

SERVER_URL_VARIABLE = "VOUCHSIM_TEST_SERVER_URL"


class ServerInfo(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def mcp_url(self) -> str: ...


@dataclass(frozen=True)
class RunningServer:
    """A server this plugin did not start (`VOUCHSIM_TEST_SERVER_URL`)."""

    base_url: str

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"


@pytest.fixture(scope="session")
def vouchsim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """The Vouchsim server for this session: `.base_url` and `.mcp_url`."""
    existing = os.environ.get(SERVER_URL_VARIABLE, "").strip().rstrip("/")
    if existing:
        yield RunningServer(existing)
        return
    from vouchsim.companion.testing.server import VouchsimServer

    server = VouchsimServer(tmp_path_factory.mktemp("vouchsim-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def vouchsim_device(vouchsim_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustedDevice]:
    """A trusted device freshly enrolled with `vouchsim_server`; closed (and `auto()` stopped) afterwards."""
    from vouchsim.companion.testing.device import TrustedDevice

    device = TrustedDevice.enrol(tmp_path_factory.mktemp("vouchsim-device"), vouchsim_server.base_url)
    try:
        yield device
    finally:
        device.close()


@pytest.fixture
def vouchsim_authorize(vouchsim_device: TrustedDevice) -> Callable[[str], str]:
    """`authorize(url) -> redirect_url`: the person completes the authorization page with `vouchsim_device`."""
    return vouchsim_device.authorize
