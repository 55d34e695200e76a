"""The transport with its real parts: sessions in the database, the delegation service, progress over SSE,
cancellation, and failures that stay JSON-RPC errors."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.tests.delegation_support import HMAC_KEY, ISSUER, World, decide
from server.tests.unit.mcp.conftest import grant_for
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import hash_secret, new_id
from vouchsim.server.core.origins import origin_allowed
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.audiences import DEFAULT_FILE, AudienceRegistry
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import SigningKeyStore
from vouchsim.server.mcp.errors import InternalError, RequestCancelled, SessionNotFound
from vouchsim.server.mcp.transport import (
    Incoming,
    McpServer,
    Reply,
    StreamedReply,
    accepts_event_stream,
)
from vouchsim.server.oauth.bearer import AccessGrant, InvalidToken
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_engine, create_sessionmaker
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.models import OAuthToken
from vouchsim.server.storage.repositories.tokens import TokenRepository
from vouchsim.server.storage.session import own_transactions

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


async def open_session(server: McpServer, grant: AccessGrant) -> Incoming:
    reply = await server.post(grant, Incoming(issuer=ISSUER), body(INITIALIZE))
    assert isinstance(reply, Reply) and reply.status == 200
    return Incoming(
        issuer=ISSUER,
        session_id=reply.headers["Mcp-Session-Id"],
        protocol_version="2025-11-25",
        accepts_sse=True,
    )


def call(request_id: int, name: str, arguments: dict[str, Any], progress_token: object = None) -> bytes:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if progress_token is not None:
        params["_meta"] = {"progressToken": progress_token}
    return body({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def cancel(request_id: int) -> bytes:
    return body({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}})


def events_of(chunk: bytes) -> dict[str, Any]:
    assert chunk.startswith(b"event: message\ndata: ") and chunk.endswith(b"\n\n")
    return json.loads(chunk.removeprefix(b"event: message\ndata: "))  # type: ignore[no-any-return]


async def pending(server: McpServer, grant: AccessGrant, incoming: Incoming) -> str:
    arguments = {
        "audienceId": "aud_test_payments",
        "purpose": "Prepare a payment.",
        "scopes": ["payments.identity"],
        "waitForApproval": False,
    }
    reply = await server.post(grant, incoming, call(1, "delegation_request", arguments))
    assert isinstance(reply, Reply) and reply.body is not None
    return json.loads(reply.body)["result"]["structuredContent"]["delegationId"]  # type: ignore[no-any-return]


async def test_a_waiting_call_streams_progress_at_its_pace_then_its_result(
    server: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    arguments = {"audienceId": "aud_test_payments", "purpose": "Pay.", "scopes": ["payments.identity"]}
    reply = await server.post(grant, incoming, call(5, "delegation_request", {**arguments, "timeoutSeconds": 0.3}, "p"))
    assert isinstance(reply, StreamedReply)
    messages = [events_of(chunk) async for chunk in reply.events]
    *progress, last = messages
    assert len(progress) >= 3
    assert all(m["method"] == "notifications/progress" and m["params"]["progressToken"] == "p" for m in progress)
    values = [m["params"]["progress"] for m in progress]
    assert values == sorted(set(values)) and values[0] == 0
    assert all(m["params"]["total"] == 0.3 for m in progress)
    result = last["result"]["structuredContent"]
    assert last["id"] == 5 and result["status"] == "pending" and result["pollIntervalSeconds"] == 5
    assert result["bindingMessage"] in progress[0]["params"]["message"]


async def test_a_decision_ends_the_wait_at_once(
    server: McpServer, world: World, clock: FrozenClock, delegations: DelegationService
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    reply = await server.post(
        grant,
        incoming,
        call(6, "delegation_status", {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 30}, 9),
    )
    assert isinstance(reply, StreamedReply)
    first = events_of(await anext(reply.events))
    assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == 9
    view = await delegations.get(delegation_id, connection_id=world.runtime.connection_id)
    await decide(delegations, world.phone, view, "approve")
    async with asyncio.timeout(10):
        rest = [events_of(chunk) async for chunk in reply.events]
    assert rest[-1]["result"]["structuredContent"]["status"] == "approved"
    assert rest[-1]["result"]["structuredContent"]["token"].count(".") == 2


async def test_notifications_cancelled_ends_a_streamed_wait_without_a_response(
    server: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 30}
    reply = await server.post(grant, incoming, call(7, "delegation_status", wait, "p"))
    assert isinstance(reply, StreamedReply)
    await anext(reply.events)  # waiting now
    acknowledged = await server.post(grant, incoming, cancel(7))
    assert acknowledged == Reply(202)
    async with asyncio.timeout(10):
        rest = [events_of(chunk) async for chunk in reply.events]
    assert all("result" not in message for message in rest)


async def test_notifications_cancelled_ends_a_json_wait_with_a_cancelled_error(
    server: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 30}
    plain = Incoming(issuer=ISSUER, session_id=incoming.session_id, protocol_version="2025-11-25")
    waiting = asyncio.ensure_future(server.post(grant, plain, call(8, "delegation_status", wait)))
    async with asyncio.timeout(10):
        while not waiting.done():  # the call may not have started waiting yet: say it until it is heard
            assert await server.post(grant, incoming, cancel(8)) == Reply(202)
            await asyncio.wait({waiting}, timeout=0.02)
    with pytest.raises(RequestCancelled) as caught:
        waiting.result()
    assert caught.value.request_id == 8 and caught.value.rpc_code == -32800


async def test_a_cancellation_from_another_session_cancels_nothing(
    server: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    other = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 0.3}
    reply = await server.post(grant, incoming, call(9, "delegation_status", wait, "p"))
    assert isinstance(reply, StreamedReply)
    await anext(reply.events)
    await server.post(grant, other, cancel(9))
    async with asyncio.timeout(10):
        rest = [events_of(chunk) async for chunk in reply.events]
    assert rest[-1]["result"]["structuredContent"]["status"] == "pending"


async def test_ending_a_session_ends_its_waiting_calls(server: McpServer, world: World, clock: FrozenClock) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 30}
    reply = await server.post(grant, incoming, call(10, "delegation_status", wait, "p"))
    assert isinstance(reply, StreamedReply)
    await anext(reply.events)
    assert await server.delete(grant, incoming) == Reply(204)
    async with asyncio.timeout(10):
        rest = [events_of(chunk) async for chunk in reply.events]
    assert all("result" not in message for message in rest)
    with pytest.raises(SessionNotFound):
        await server.post(grant, incoming, body({"jsonrpc": "2.0", "id": 1, "method": "ping"}))


async def test_a_stranger_cannot_use_a_session(server: McpServer, world: World, clock: FrozenClock) -> None:
    incoming = await open_session(server, grant_for(world.runtime, clock))
    ping = body({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    with pytest.raises(SessionNotFound) as caught:
        await server.post(grant_for(world.strangers_runtime, clock), incoming, ping)
    assert caught.value.data == {"reason": "not_found"}


async def test_a_failure_of_ours_is_an_internal_error_not_a_crash(
    engine: AsyncEngine,
    bus: EventBus,
    world: World,
    clock: FrozenClock,
    settings: Settings,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The delegation service reads a database that has no tables: every call of it fails unexpectedly.
    empty = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        broken = DelegationService(
            own_transactions(create_sessionmaker(empty)),
            AudienceRegistry.load(DEFAULT_FILE),
            SigningKeyStore(HMAC_KEY, clock, settings),
            bus,
            clock,
            settings,
            HMAC_KEY,
        )
        server = McpServer(Runtime(settings, clock, HMAC_KEY), create_sessionmaker(engine, bus), bus, broken)
        grant = grant_for(world.runtime, clock)
        incoming = await open_session(server, grant)
        with caplog.at_level(logging.ERROR, logger="vouchsim.mcp"), pytest.raises(InternalError) as caught:
            await server.post(grant, incoming, call(11, "delegation_status", {"delegationId": "dlg_x"}))
        assert caught.value.request_id == 11 and caught.value.rpc_code == -32603
        assert "something went wrong" in caught.value.description
        assert "no such table" not in caught.value.description
        assert any("tools/call" in record.getMessage() for record in caplog.records)
    finally:
        await empty.dispose()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("https://vouch.test", True),
        ("https://vouch.test:443", True),
        ("HTTPS://VOUCH.TEST", True),
        ("http://localhost:6274", True),
        ("http://127.0.0.1:3000", True),
        ("http://[::1]:8080", True),
        ("http://app.localhost", True),
        ("https://inspector.example", True),  # allowed by the operator
        ("http://vouch.test", False),  # another scheme is another origin
        ("https://vouch.test:8443", False),
        ("https://evil.example", False),
        ("https://vouch.test.evil.example", False),
        ("null", False),
        ("file://", False),
        ("https://vouch.test/path", False),
        ("https://[bad", False),
    ],
)
def test_origins(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, "https://vouch.test", ("https://inspector.example",)) is allowed


def test_event_streams_are_only_for_clients_that_accept_them() -> None:
    assert accepts_event_stream("application/json, text/event-stream")
    assert accepts_event_stream("text/event-stream;q=0.9")
    assert not accepts_event_stream("application/json")
    assert not accepts_event_stream(None)
    assert not accepts_event_stream("*/*")


# -- several instances (PostgreSQL: LISTEN/NOTIFY) ----------------------------------------------------------------
@pytest.fixture
async def second_instance(
    engine: AsyncEngine, database_url: str, clock: FrozenClock, settings: Settings, delegations: DelegationService
) -> AsyncIterator[McpServer]:
    """Another process's McpServer on the same database, with its own event bus."""
    if not database_url.startswith("postgresql"):
        pytest.skip("crossing instances needs PostgreSQL LISTEN/NOTIFY")
    events = EventBus()
    await events.start(database_url)
    other = McpServer(Runtime(settings, clock, HMAC_KEY), create_sessionmaker(engine, events), events, delegations)
    events.add_listener(other.on_event)
    try:
        yield other
    finally:
        await events.stop()


async def seed_access_token(server: McpServer, world: World, clock: FrozenClock) -> tuple[str, str]:
    raw = "vsat_" + secrets.token_urlsafe(32)
    token_id = new_id("tok")
    async with server.transaction() as db:
        db.add(
            OAuthToken(
                id=token_id,
                grant_id=new_id("grant"),
                client_id=world.runtime.client_id,
                user_id=world.runtime.user_id,
                connection_id=world.runtime.connection_id,
                scope="identity delegation",
                resource=f"{ISSUER}/mcp",
                access_token_hash=hash_secret(raw),
                created_at=clock.now(),
                access_expires_at=clock.now() + timedelta(hours=1),
            )
        )
    return raw, token_id


async def test_a_revocation_on_one_instance_empties_the_cache_of_another(
    server: McpServer, second_instance: McpServer, world: World, clock: FrozenClock
) -> None:
    raw, token_id = await seed_access_token(server, world, clock)
    await server.authenticate(f"Bearer {raw}", ISSUER)  # cached on the first instance
    assert server.cache.grant(hash_secret(raw)) is not None
    async with server.events.subscribe(f"revoked:token:{token_id}") as heard:
        async with second_instance.transaction() as db:
            await TokenRepository(db).revoke_token(token_id, clock.now())
        async with asyncio.timeout(10):
            await heard.get()
    assert server.cache.grant(hash_secret(raw)) is None
    with pytest.raises(InvalidToken):
        await server.authenticate(f"Bearer {raw}", ISSUER)


async def test_a_waiting_call_is_cancelled_through_another_instance(
    server: McpServer, second_instance: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    incoming = await open_session(server, grant)
    delegation_id = await pending(server, grant, incoming)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 30}
    reply = await server.post(grant, incoming, call(12, "delegation_status", wait, "p"))
    assert isinstance(reply, StreamedReply)
    await anext(reply.events)  # waiting on the first instance
    assert await second_instance.post(grant, incoming, cancel(12)) == Reply(202)
    async with asyncio.timeout(10):
        rest = [events_of(chunk) async for chunk in reply.events]
    assert all("result" not in message for message in rest)


# -- 2026-07-28: a client that hangs up cancels its call -----------------------------------------------------------
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def modern_call(request_id: int, name: str, arguments: dict[str, Any], progress_token: object = None) -> bytes:
    meta: dict[str, Any] = dict(MODERN_META)
    if progress_token is not None:
        meta["progressToken"] = progress_token
    params = {"name": name, "arguments": arguments, "_meta": meta}
    return body({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def modern_incoming(name: str, *, sse: bool, gone: asyncio.Event | None = None) -> Incoming:
    async def disconnected() -> None:
        assert gone is not None
        await gone.wait()

    return Incoming(
        issuer=ISSUER,
        protocol_version="2026-07-28",
        method="tools/call",
        name=name,
        accepts_sse=sse,
        disconnected=disconnected if gone is not None else None,
    )


async def wait_until_waiting(bus: EventBus, topic: str, waiters: int) -> None:
    async with asyncio.timeout(10):
        while True:  # the waits run in tasks of their own: look until they got there
            if bus.waiting_on(topic) == waiters:
                return
            await asyncio.sleep(0.01)


async def test_a_json_wait_ends_when_its_client_goes_away(
    server: McpServer, world: World, clock: FrozenClock, bus: EventBus
) -> None:
    """No SSE, no progress token: the reply would be JSON after up to 45 s; the client's going ends the wait."""
    grant = grant_for(world.runtime, clock)
    delegation_id = await pending(server, grant, await open_session(server, grant))
    gone = asyncio.Event()
    incoming = modern_incoming("delegation_status", sse=False, gone=gone)
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 45}
    call_ = asyncio.ensure_future(server.post(grant, incoming, modern_call(3, "delegation_status", wait)))
    await wait_until_waiting(bus, f"delegation:{delegation_id}", 1)
    gone.set()
    async with asyncio.timeout(10):
        with pytest.raises(RequestCancelled) as caught:
            await call_
    assert caught.value.request_id == 3
    assert bus.waiting_on(f"delegation:{delegation_id}") == 0  # nothing waits on for a dead connection


async def test_a_json_wait_that_ends_first_leaves_no_watcher(
    server: McpServer, world: World, clock: FrozenClock
) -> None:
    grant = grant_for(world.runtime, clock)
    gone = asyncio.Event()
    incoming = modern_incoming("delegation_request", sse=False, gone=gone)
    arguments = {
        "audienceId": "aud_test_payments",
        "purpose": "Pay.",
        "scopes": ["payments.identity"],
        "timeoutSeconds": 0.1,
    }
    reply = await server.post(grant, incoming, modern_call(4, "delegation_request", arguments))
    assert isinstance(reply, Reply) and reply.body is not None
    result = json.loads(reply.body)["result"]
    assert result["resultType"] == "complete" and result["structuredContent"]["status"] == "pending"


async def test_a_streamed_wait_ends_when_its_stream_is_closed(
    server: McpServer, world: World, clock: FrozenClock, bus: EventBus
) -> None:
    grant = grant_for(world.runtime, clock)
    delegation_id = await pending(server, grant, await open_session(server, grant))
    wait = {"delegationId": delegation_id, "waitForApproval": True, "timeoutSeconds": 45}
    reply = await server.post(
        grant, modern_incoming("delegation_status", sse=True), modern_call(5, "delegation_status", wait, "p")
    )
    assert isinstance(reply, StreamedReply)
    first = events_of(await anext(reply.events))
    assert first["method"] == "notifications/progress"
    await wait_until_waiting(bus, f"delegation:{delegation_id}", 1)
    await reply.events.aclose()  # what the framework does when the client hangs up
    await wait_until_waiting(bus, f"delegation:{delegation_id}", 0)
