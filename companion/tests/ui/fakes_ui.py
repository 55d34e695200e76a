"""What the TUI tests (Pilot and snapshots) and the README screenshots share: a fake server whose pairing
codes expire on its own clock, a clock and a sleep the test moves by hand, a fixed device key (so
fingerprints and screenshots are the same on every run), and an app built on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from textual.content import Content
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from companion.tests.fakes import Device, FakeDeviceServer, enrolment_for, iso
from vouchsim.companion.app import CompanionApp
from vouchsim.companion.core.config import CompanionConfig
from vouchsim.companion.core.keystore import Enrolment, Keystore, public_key_bytes
from vouchsim.companion.core.pin import PinStore

T0 = datetime(2026, 11, 25, 15, 1, tzinfo=UTC).timestamp()  # a minute after the fake's pairing requests
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PIN = "2468"
CODE_TTL = 180
SIZE = (100, 32)


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualSleep:
    """The app's sleep (between reconnections, between folder polls): returns only when the test wakes it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._event: asyncio.Event | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def wake(self) -> None:
        """Let every sleeper go on (each sleeps again on its next call)."""
        if self._event is not None:
            self._event.set()
            self._event = None

    @property
    def sleeping(self) -> bool:
        return self._event is not None


def fixed_bytes(n: int) -> bytes:
    """For a nonce shown on screen (a signed statement in a snapshot): the same on every run."""
    return bytes(range(n))


class UiFakeServer(FakeDeviceServer):
    """The shared fake, with pairing codes that expire CODE_TTL seconds after approval on its clock (the
    shared fake answers a fixed instant), so the code screen's countdown is meaningful."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        response = super().handle(request)
        if request.url.path.endswith("/approve") and response.status_code == 200:
            body: dict[str, Any] = json.loads(response.content)
            body["code_expires_at"] = iso(self.clock() + CODE_TTL)
            return httpx.Response(200, json=body)
        return response


def enrol_device(server: FakeDeviceServer, state_dir: Path, *, name: str = "Pixel of QA") -> Enrolment:
    """Store the fixed key as enrolled with `server`, and make the server know it, without any request."""
    enrolment = enrolment_for(KEY, server.issuer)
    Keystore(state_dir).save(KEY, enrolment)
    raw = public_key_bytes(KEY)
    server.devices[enrolment.device_id] = Device(enrolment.device_id, enrolment.user_id, name, KEY.public_key(), raw)
    return enrolment


def cheap_pins(state_dir: Path) -> PinStore:
    """A PIN store with a tiny scrypt cost: the tests check the logic, not the work factor."""
    return PinStore(state_dir, cost=2**4)


def make_app(
    server: FakeDeviceServer,
    state_dir: Path,
    *,
    clock: FakeClock,
    sleep: ManualSleep,
    enrolled: bool = True,
    pin: str | None = PIN,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    server_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    kind: type[CompanionApp] = CompanionApp,
    testbed_token: str | None = None,
    **options: Any,
) -> CompanionApp:
    """The app over the fake server; `kind` and `options` make the demo's app (DemoApp) the same way."""
    pins = cheap_pins(state_dir)
    if enrolled:
        enrol_device(server, state_dir)
        if pin is not None:
            pins.set(pin)

    def http_factory(url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, transport=transport or server.transport)

    if kind is CompanionApp:
        options.setdefault("device_name", "Pixel of QA")
    return kind(
        CompanionConfig(state_dir=state_dir, server_url=server_url, testbed_token=testbed_token),
        http_factory=http_factory,
        pins=pins,
        clock=clock,
        random_bytes=random_bytes,
        sleep=sleep,
        **options,
    )


async def settle(pilot: Pilot[Any], done: Callable[[], bool], *, within: float = 10.0) -> None:
    """Let the app run (workers, threads, messages) until `done()`; fail when it has not within `within` seconds.
    By the clock, not by a number of pauses: a pause lasts as long as the app keeps working (a few ms when idle)."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the app did not reach the expected state")
        await pilot.pause()


def text(widget: Widget) -> str:
    """What a Static (or Label) shows, as plain text."""
    assert isinstance(widget, Static)
    visual = widget.visual
    return visual.plain if isinstance(visual, Content) else str(visual)


# --- the testbed journal, for the Timeline ---------------------------------------------------------------------

TESTBED_TOKEN = "tb-token"
JOURNAL_T0 = datetime(2026, 11, 25, 15, 0, 30, tzinfo=UTC)


class FakeJournal:
    """`GET /testbed/journal` as the server answers it (bearer token, `since`, `limit`, `wait` as a long poll held
    until `record()` adds an entry), or 404 when `enabled` is False (a server without the testbed)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.entries: list[dict[str, Any]] = []
        self.reads: list[httpx.Request] = []
        self._recorded = asyncio.Event()

    def record(
        self,
        kind: str,
        method: str,
        path: str,
        status: int | None,
        *,
        summary: dict[str, Any] | None = None,
        fault: str | None = None,
        client_id: str | None = "vsc_1",
    ) -> dict[str, Any]:
        entry = {
            "id": len(self.entries) + 1,
            "at": (JOURNAL_T0 + timedelta(seconds=len(self.entries))).isoformat().replace("+00:00", "Z"),
            "kind": kind,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": 3.5,
            "client_id": client_id,
            "summary": summary or {},
            "fault": fault,
        }
        self.entries.append(entry)
        self._recorded.set()
        self._recorded = asyncio.Event()
        return entry

    def the_flow(self, *, steps: int | None = None) -> None:
        """Discovery to the first MCP call, with a device poll (not a step) and a refresh a fault refused (the first
        `steps` of them: 8 is the moment the companion has approved the pairing)."""
        self._the_flow()
        del self.entries[steps or len(self.entries) :]

    def _the_flow(self) -> None:
        refused = {"method": "initialize", "error": "invalid_token"}
        self.record("mcp", "POST", "/mcp", 401, summary=refused, client_id=None)
        self.record("discovery", "GET", "/.well-known/oauth-protected-resource/mcp", 200, client_id=None)
        self.record("discovery", "GET", "/.well-known/oauth-authorization-server", 200, client_id=None)
        self.record("register", "POST", "/oauth/register", 201)
        self.record("authorize", "GET", "/oauth/authorize", 303, summary={"scope": "identity delegation"})
        self.record("pairing", "GET", "/oauth/authorize/pairing/pair_1", 200)
        self.record("device", "GET", "/device/connections", 200, client_id=None)
        self.record("device", "POST", "/device/pairings/claim", 200)
        self.record("pairing", "POST", "/oauth/authorize/pairing/pair_1", 303)
        self.record("token", "POST", "/oauth/token", 200, summary={"grant_type": "authorization_code"})
        self.record("mcp", "POST", "/mcp", 200, summary={"method": "tools/call", "name": "identity_get", "id": 2})
        self.record(
            "token",
            "POST",
            "/oauth/token",
            400,
            summary={"grant_type": "refresh_token", "error": "invalid_grant"},
            fault="flt_1",
        )

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.reads.append(request)
        if not self.enabled:
            return httpx.Response(404, json={"status_code": 404, "detail": "Not Found"})
        if request.headers.get("Authorization") != f"Bearer {TESTBED_TOKEN}":
            return httpx.Response(401, json={"error": "unauthorized", "error_description": "Bad testbed token."})
        since = int(request.url.params.get("since", "0"))
        wait = float(request.url.params.get("wait", "0"))
        found = [e for e in self.entries if e["id"] > since]
        if not found and wait:
            recorded = self._recorded
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorded.wait(), wait)
            found = [e for e in self.entries if e["id"] > since]
        if "limit" in request.url.params:
            limit = int(request.url.params["limit"])
            found = found[:limit] if "since" in request.url.params else found[-limit:]
        return httpx.Response(200, json={"entries": found})


class TestbedTransport(httpx.AsyncBaseTransport):
    """The fake server's transport, with `/testbed/` answered by a FakeJournal."""

    __test__ = False

    def __init__(self, inner: httpx.AsyncBaseTransport, journal: FakeJournal) -> None:
        self.inner = inner
        self.journal = journal

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/testbed/"):
            return await self.journal.handle(request)
        return await self.inner.handle_async_request(request)
