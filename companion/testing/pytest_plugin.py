"""The `vouchsim` pytest plugin (registered by the `pytest11` entry point): fixtures for a live Vouchsim
server, a trusted device, the person at the authorization page, an OAuth client, a token, and the server's
testbed controls.

- `vouchsim_server` (session): a `VouchsimServer` on a free port with SQLite in a temporary directory and the
  testbed controls on (a token generated for the session), or, when `VOUCHSIM_TEST_SERVER_URL` is set, the server
  already running there (its testbed reached with `VOUCHSIM_TESTBED_TOKEN`, if set). `.base_url`, `.mcp_url`,
  `.testbed_token`.
- `vouchsim_device` (function): a `TrustedDevice` enrolled with it: `.approve(id)`, `.deny(id)`,
  `.pending()`, `.auto("approve-all" | "deny-all" | rules)`, `.stop()`.
- `vouchsim_authorize` (function): `authorize(url) -> redirect_url`, completing the authorization page for
  `url` with `vouchsim_device`.
- `vouchsim_client` (function): an `OAuthClient` registered by dynamic client registration, with PKCE helpers
  (`authorization_request()`, `exchange(redirect, request)`, `refresh(tokens)`, `revoke(token)`).
- `vouchsim_token` (function): a `TokenSet` for `vouchsim_client`, through the real pairing flow
  (`.access_token`, `.refresh_token`, `.authorization`).
- `vouchsim_testbed` (function): the testbed controls, `Testbed`: `.journal(client_id=...)`, `.fault(...)` (a
  context manager), `.advance(seconds)`, `.reset()`. Faults a test leaves armed are removed after it, and the
  clock goes back to real time.

`@pytest.mark.vouchsim_reset` (or `--vouchsim-reset`, for every test that uses a Vouchsim fixture) resets the
server before the test. When a test fails, the report gets a "vouchsim journal" section: the journal of the
clients its fixtures registered (`vouchsim_client`, or `vouchsim_testbed.track(client_id)`), else every entry
recorded during the test. The server masks every secret in it.

Nothing is imported or started unless a test asks for one of these fixtures.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from vouchsim.companion.testing.device import TrustedDevice
    from vouchsim.companion.testing.oauth import OAuthClient, TokenSet
    from vouchsim.companion.testing.testbed import Testbed

SERVER_URL_VARIABLE = "VOUCHSIM_TEST_SERVER_URL"
TESTBED_TOKEN_VARIABLE = "VOUCHSIM_TESTBED_TOKEN"  # noqa: S105 - the variable's name
RESET_MARKER = "vouchsim_reset"
REPORT_SECTION = "vouchsim journal"
TOKEN_SCOPE = "identity delegation"  # noqa: S105 - what the MCP resource grants: the identity tool and delegation_request


class ServerInfo(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def mcp_url(self) -> str: ...

    @property
    def testbed_token(self) -> str | None: ...


@dataclass(frozen=True)
class RunningServer:
    """A server this plugin did not start (`VOUCHSIM_TEST_SERVER_URL`)."""

    base_url: str
    testbed_token: str | None = None

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"


@dataclass
class _TestRecord:
    """What the failure report needs about one test: where the journal is, whose, and from where."""

    testbed: Testbed | None
    since: int | None = None
    client_ids: list[str] = field(default_factory=list)


_RECORD = pytest.StashKey[_TestRecord]()


# --- options, markers, the failure report ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vouchsim")
    group.addoption(
        "--vouchsim-reset",
        action="store_true",
        default=False,
        help="reset the Vouchsim server (POST /testbed/reset) before every test that uses a Vouchsim fixture",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{RESET_MARKER}: reset the Vouchsim server (clients, users, devices, tokens…) before this test"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if isinstance(report, pytest.TestReport) and report.failed and report.when in ("setup", "call"):
        record = item.stash.get(_RECORD, None)
        if record is not None and record.testbed is not None:
            report.sections.append((REPORT_SECTION, _journal_report(record.testbed, record)))
    return report


def _journal_report(testbed: Testbed, record: _TestRecord) -> str:
    from vouchsim.companion.core.errors import CompanionError
    from vouchsim.companion.testing.testbed import journal_line

    try:
        if record.client_ids:
            lines: list[str] = []
            for client_id in dict.fromkeys(record.client_ids):
                entries = testbed.journal(client_id=client_id, since=record.since)
                lines.append(f"client {client_id} ({len(entries)} requests):")
                lines += [journal_line(entry) for entry in entries]
            return "\n".join(lines)
        entries = testbed.journal(since=record.since)
        return "\n".join([f"every request during the test ({len(entries)}):", *map(journal_line, entries)])
    except CompanionError as exc:  # the report must not hide the test's own failure
        return f"could not read the journal: {exc}"


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vouchsim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """The Vouchsim server for this session: `.base_url`, `.mcp_url` and `.testbed_token`."""
    existing = os.environ.get(SERVER_URL_VARIABLE, "").strip().rstrip("/")
    if existing:
        yield RunningServer(existing, os.environ.get(TESTBED_TOKEN_VARIABLE, "").strip() or None)
        return
    from vouchsim.companion.testing.server import VouchsimServer

    token = secrets.token_urlsafe(32)
    server = VouchsimServer(tmp_path_factory.mktemp("vouchsim-server"), testbed_token=token).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _vouchsim_session_testbed(vouchsim_server: ServerInfo) -> Iterator[Testbed | None]:
    """The plugin's own handle on the testbed (resets, failure reports); None without a token."""
    if not vouchsim_server.testbed_token:
        yield None
        return
    from vouchsim.companion.testing.testbed import Testbed

    with Testbed(vouchsim_server.base_url, vouchsim_server.testbed_token) as testbed:
        yield testbed


@pytest.fixture(autouse=True)
def _vouchsim_per_test(request: pytest.FixtureRequest) -> None:
    """For a test that uses a Vouchsim fixture (or is marked): the reset it asked for, and where its journal
    starts, for the failure report. Other tests start nothing."""
    marked = request.node.get_closest_marker(RESET_MARKER) is not None
    if not marked and not any(name.startswith("vouchsim_") for name in request.fixturenames):
        return
    testbed: Testbed | None = request.getfixturevalue("_vouchsim_session_testbed")
    if marked or request.config.getoption("vouchsim_reset"):
        if testbed is None:
            pytest.fail(_no_testbed(request.getfixturevalue("vouchsim_server"), "reset it"), pytrace=False)
        testbed.reset()
    record = _TestRecord(testbed, since=testbed.last_entry_id() if testbed is not None else None)
    request.node.stash[_RECORD] = record


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


@pytest.fixture
def vouchsim_client(vouchsim_server: ServerInfo, request: pytest.FixtureRequest) -> Iterator[OAuthClient]:
    """A public client registered by DCR (RFC 7591) for the MCP resource, with PKCE helpers; its journal is the
    one a failure report shows."""
    from vouchsim.companion.testing.oauth import OAuthClient

    client = OAuthClient.register(vouchsim_server.base_url, resource=vouchsim_server.mcp_url)
    _track(request, client.client_id)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def vouchsim_token(vouchsim_client: OAuthClient, vouchsim_authorize: Callable[[str], str]) -> TokenSet:
    """Tokens for `vouchsim_client` (scope `identity delegation`), through the real flow: the authorization page,
    pairing with `vouchsim_device`, the code exchanged with its PKCE verifier."""
    authorization = vouchsim_client.authorization_request(scope=TOKEN_SCOPE)
    return vouchsim_client.exchange(vouchsim_authorize(authorization.url), authorization)


class VouchsimTestbed:
    """`vouchsim_testbed`: the `Testbed` of the session's server, and `track(client_id)` to name a client of the
    test's own whose journal a failure report shows."""

    def __init__(self, testbed: Testbed, request: pytest.FixtureRequest) -> None:
        self._testbed = testbed
        self._request = request
        # The controls, as `Testbed` has them (see companion.testing.testbed).
        self.journal = testbed.journal
        self.clear_journal = testbed.clear_journal
        self.fault = testbed.fault
        self.add_fault = testbed.add_fault
        self.faults = testbed.faults
        self.remove_fault = testbed.remove_fault
        self.remove_faults = testbed.remove_faults
        self.advance = testbed.advance
        self.clock = testbed.clock
        self.reset_clock = testbed.reset_clock
        self.reset = testbed.reset
        self.last_entry_id = testbed.last_entry_id

    @property
    def server_url(self) -> str:
        return self._testbed.server_url

    def track(self, client_id: str) -> None:
        """Show this client's journal if the test fails."""
        _track(self._request, client_id)


@pytest.fixture
def vouchsim_testbed(
    vouchsim_server: ServerInfo, _vouchsim_session_testbed: Testbed | None, request: pytest.FixtureRequest
) -> Iterator[VouchsimTestbed]:
    """The server's testbed controls: journal, faults, clock, reset. Afterwards the faults the test left armed
    are removed and the clock is back to real time."""
    if _vouchsim_session_testbed is None:
        pytest.fail(_no_testbed(vouchsim_server, "use vouchsim_testbed"), pytrace=False)
    yield VouchsimTestbed(_vouchsim_session_testbed, request)
    _vouchsim_session_testbed.remove_faults()
    _vouchsim_session_testbed.reset_clock()


def _track(request: pytest.FixtureRequest, client_id: str) -> None:
    record = request.node.stash.get(_RECORD, None)
    if record is not None and client_id not in record.client_ids:
        record.client_ids.append(client_id)


def _no_testbed(server: ServerInfo, wanted: str) -> str:
    return (
        f"The Vouchsim server at {server.base_url} has no testbed token to {wanted}: with {SERVER_URL_VARIABLE}, "
        f"run that server with --testbed and set {TESTBED_TOKEN_VARIABLE} to its token."
    )
