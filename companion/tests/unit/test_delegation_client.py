"""DeviceApiClient's delegation calls against the fake device API, which checks request signatures and
rebuilds the decision statement from its own record before verifying the decision's signature."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from companion.tests.fakes import (
    ISSUER,
    NOW,
    FakeDeviceServer,
    b64url_decode,
    expected_statement,
    iso,
    sample_delegation,
    sse,
    verify_request,
)
from vouchsim.companion.core import errors
from vouchsim.companion.core.client import STREAM_READ_TIMEOUT, DeviceApiClient
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.schemas import Delegation

pytestmark = pytest.mark.anyio

WAIT = 5  # seconds: the bound on every wait for something the fake does at once


@pytest.fixture
def server() -> FakeDeviceServer:
    return FakeDeviceServer(clock=lambda: NOW)


@pytest.fixture
async def http(server: FakeDeviceServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ISSUER, transport=server.transport, timeout=7) as client:
        yield client


@pytest.fixture
async def client(http: httpx.AsyncClient, state_dir: Path) -> DeviceApiClient:
    client = DeviceApiClient(http, Keystore(state_dir), clock=lambda: NOW)
    await client.enrol("Pixel of QA")
    return client


def ids(delegations: list[Delegation]) -> list[str]:
    return [d.delegation_id for d in delegations]


# --- listing -------------------------------------------------------------------------------------------


async def test_delegations_lists_pending_history_and_all(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    server.add_delegation(audience_id="aud_demo")
    server.add_delegation(user_id="usr_9")  # someone else's
    server.delegation("dlg_1")["status"] = "denied"
    assert ids(await client.delegations()) == ["dlg_2"]
    request = server.requests[-1]
    assert (request.method, request.url.raw_path) == ("GET", b"/device/delegations?status=pending")
    assert verify_request(request, server.devices["dev_1"].public_key)  # the query is part of what is signed
    assert ids(await client.delegations("history")) == ["dlg_1"]
    assert ids(await client.delegations("all")) == ["dlg_2", "dlg_1"]


async def test_delegation_objects_are_typed_and_keep_expires_at_verbatim(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    server.add_delegation(expires_at="2026-11-18T11:11:40.500+00:00", scopes=["payments.prepare", "payments.identity"])
    (delegation,) = await client.delegations()
    assert delegation.expires_at == "2026-11-18T11:11:40.500+00:00"
    assert delegation.expires == datetime(2026, 11, 18, 11, 11, 40, 500000, tzinfo=UTC)
    assert delegation.created_at == datetime.fromtimestamp(NOW, UTC)
    assert delegation.scopes == ["payments.prepare", "payments.identity"]
    assert (delegation.client_name, delegation.audience_name, delegation.binding_message) == (
        "Acme Agent Client",
        "Test payments",
        "amber-falcon-42",
    )
    assert delegation.decided_at is None and delegation.token_expires_at is None and delegation.is_pending


async def test_an_unknown_filter_is_refused_before_any_request(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    sent = len(server.requests)
    with pytest.raises(ValueError, match="pending, history, all"):
        await client.delegations("everything")  # type: ignore[arg-type]
    assert len(server.requests) == sent


async def test_a_pending_delegation_past_its_expiry_is_history(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    server.add_delegation(expires_at=iso(NOW - 1))
    assert await client.delegations() == []
    (expired,) = await client.delegations("history")
    assert expired.status == "expired"


async def test_one_delegation_by_id(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    server.add_delegation()
    server.delegation("dlg_1")["status"] = "approved"
    found = await client.delegation("dlg_1")
    assert (found.delegation_id, found.status) == ("dlg_1", "approved")
    assert server.requests[-1].url.params["status"] == "all"
    with pytest.raises(errors.DelegationNotFoundError, match="dlg_9") as caught:
        await client.delegation("dlg_9")
    assert caught.value.status == 404


@pytest.mark.parametrize(
    "bad",
    [
        {"expires_at": "soon"},
        {"expires_at": "2026-11-25T15:05:00"},  # no time zone
        {"scopes": "payments.identity"},
        {"binding_message": None},
    ],
)
async def test_a_malformed_delegation_is_an_unexpected_response(
    client: DeviceApiClient, server: FakeDeviceServer, bad: dict[str, object]
) -> None:
    malformed = server.public(server.add_delegation()) | bad
    server.next_error = httpx.Response(200, json={"delegations": [malformed]})
    with pytest.raises(errors.UnexpectedResponseError, match="not what the device API promises"):
        await client.delegations()


# --- decisions -----------------------------------------------------------------------------------------


async def test_approve_sends_a_signed_statement_the_server_verifies(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    record = server.add_delegation()
    (pending,) = await client.delegations()
    result = await client.decide(pending, "approve")
    request = server.requests[-1]
    assert (request.method, request.url.raw_path) == ("POST", b"/device/delegations/dlg_1/decision")
    assert request.headers["Content-Type"] == "application/json"
    assert verify_request(request, server.devices["dev_1"].public_key)
    body = json.loads(request.content)
    assert set(body) == {"decision", "nonce", "signature"}
    assert body["decision"] == "approve"
    assert len(b64url_decode(body["nonce"])) == 16
    evidence = record["evidence"]
    assert evidence["statement"] == expected_statement(record, "approve", body["nonce"])
    assert (evidence["nonce"], evidence["signature"]) == (body["nonce"], body["signature"])
    assert (result.status, result.decided_by) == ("approved", "dev_1")
    assert result.decided_at == datetime.fromtimestamp(NOW, UTC)
    assert result.token_expires_at is not None


async def test_deny(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    record = server.add_delegation()
    (pending,) = await client.delegations()
    result = await client.decide(pending, "deny")
    assert (result.status, result.token_expires_at) == ("denied", None)
    assert record["evidence"]["statement"].count(b'"decision":"deny"') == 1


async def test_the_signed_statement_can_be_shown_before_it_is_sent(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    record = server.add_delegation(purpose="Pay 12 € to “Zoë”")
    (pending,) = await client.delegations()
    signed = client.sign_decision(pending, "approve")
    assert len(server.requests) == 2  # enrol, list: signing itself sends nothing
    assert (await client.send_decision(signed)).status == "approved"
    assert record["evidence"]["statement"] == signed.statement
    assert "Pay 12 € to “Zoë”".encode() in signed.statement


async def test_every_decision_has_a_fresh_nonce(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    for _ in range(3):
        server.add_delegation()
    for delegation in await client.delegations():
        await client.decide(delegation, "deny")
    assert len(server.decision_nonces) == 3


async def test_deciding_twice_is_delegation_closed(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    (pending,) = await client.delegations()
    await client.decide(pending, "approve")
    with pytest.raises(errors.DelegationClosedError, match="no longer pending: it is approved") as caught:
        await client.decide(pending, "deny")
    assert (caught.value.status, caught.value.delegation_status) == (409, "approved")


async def test_a_statement_built_from_another_copy_is_refused(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    """The server signs off only on what it holds: a purpose changed since the device read it fails."""
    server.add_delegation()
    (pending,) = await client.delegations()
    server.before_decision = lambda record: record.update(purpose="Move all the money.")
    with pytest.raises(errors.InvalidDecisionError, match="signature"):
        await client.decide(pending, "approve")
    assert server.delegation("dlg_1")["status"] == "pending"


async def test_deciding_an_unknown_delegation(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation(user_id="usr_9")
    with pytest.raises(errors.DelegationNotFoundError):
        await client.decide(sample_delegation(delegation_id="dlg_1"), "approve")  # another user's
    assert server.delegation("dlg_1")["status"] == "pending"


async def test_ids_are_escaped_into_one_path_segment(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    with pytest.raises(errors.DelegationNotFoundError):
        await client.revoke_delegation("../connections/x")
    assert server.requests[-1].url.raw_path == b"/device/delegations/..%2Fconnections%2Fx/revoke"
    assert verify_request(server.requests[-1], server.devices["dev_1"].public_key)


# --- revocation ----------------------------------------------------------------------------------------


async def test_revoke_an_approved_delegation_idempotently(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    (pending,) = await client.delegations()
    await client.decide(pending, "approve")
    revoked = await client.revoke_delegation("dlg_1")
    request = server.requests[-1]
    assert (request.method, request.content) == ("POST", b"")
    assert "Content-Type" not in request.headers
    assert revoked.status == "revoked"
    assert (await client.revoke_delegation("dlg_1")).status == "revoked"


async def test_revoking_what_was_never_approved(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    with pytest.raises(errors.InvalidRequestError, match="still pending"):
        await client.revoke_delegation("dlg_1")
    server.delegation("dlg_1")["status"] = "denied"
    with pytest.raises(errors.DelegationClosedError, match="nothing to revoke") as caught:
        await client.revoke_delegation("dlg_1")
    assert caught.value.delegation_status == "denied"
    with pytest.raises(errors.DelegationNotFoundError):
        await client.revoke_delegation("dlg_2")


# --- the stream ----------------------------------------------------------------------------------------


async def collect(
    client: DeviceApiClient, opened: list[int] | None = None, seen: list[Delegation] | None = None
) -> list[Delegation]:
    """Every delegation the stream yields until it ends; `seen` keeps them when it raises instead."""

    def on_open() -> None:
        if opened is not None:
            opened.append(len(seen))

    seen = [] if seen is None else seen
    async with asyncio.timeout(WAIT):
        async for delegation in client.stream_delegations(on_open=on_open):
            seen.append(delegation)
    return seen


async def test_the_stream_replays_pending_delegations_and_ends_cleanly(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    server.add_delegation()
    server.add_delegation(audience_id="aud_demo")
    server.add_delegation(status="denied")
    server.stream_connects = ["end"]
    opened: list[int] = []
    seen = await collect(client, opened)
    assert ids(seen) == ["dlg_1", "dlg_2"]  # oldest first, pending only, keep-alive comment ignored
    assert seen[1].audience_id == "aud_demo"
    assert opened == [0]  # once, before any event


async def test_the_stream_request_is_signed_and_waits_past_keep_alives(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    server.stream_connects = ["end"]
    await collect(client)
    request = server.requests[-1]
    assert (request.method, request.url.raw_path) == ("GET", b"/device/delegations/stream")
    assert request.headers["Accept"] == "text/event-stream"
    assert verify_request(request, server.devices["dev_1"].public_key)
    timeout = request.extensions["timeout"]
    assert timeout["read"] == STREAM_READ_TIMEOUT > 15  # the server's keep-alive interval
    assert timeout["connect"] == 7  # the rest as the client was configured


async def test_the_stream_follows_changes_live(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    received: asyncio.Queue[Delegation] = asyncio.Queue()

    async def consume() -> None:
        async for delegation in client.stream_delegations():
            received.put_nowait(delegation)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(WAIT):
        first = await received.get()
        assert (first.delegation_id, first.status) == ("dlg_1", "pending")
        server.add_delegation(purpose="A second one.")
        second = await received.get()
        assert (second.delegation_id, second.purpose) == ("dlg_2", "A second one.")
        await client.decide(first, "approve")
        update = await received.get()
        assert (update.delegation_id, update.status) == ("dlg_1", "approved")
        server.close_streams()
        await task  # a clean end of stream ends the iteration
    assert received.empty()


async def test_leaving_the_stream_early_releases_it(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    async with asyncio.timeout(WAIT), aclosing(client.stream_delegations()) as stream:
        async for _ in stream:
            assert len(server.subscribers) == 1
            break
    assert server.subscribers == []


async def test_a_dropped_stream_is_a_transport_error(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    server.stream_connects = ["drop"]
    opened: list[int] = []
    with pytest.raises(errors.TransportError, match=r"127\.0\.0\.1:8741.*ReadError") as caught:
        await collect(client, opened)
    assert type(caught.value) is errors.TransportError
    assert opened == [0]


async def test_a_stream_ended_by_a_revocation_says_so(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_delegation()
    server.stream_connects = ["revoked"]
    seen: list[Delegation] = []

    async def follow() -> None:
        async with aclosing(client.stream_delegations()) as stream:
            async for delegation in stream:
                seen.append(delegation)

    with pytest.raises(errors.DeviceRevokedError, match="Revoked just now") as caught:
        await follow()
    assert ids(seen) == ["dlg_1"]  # what came before the revocation still arrived
    assert (caught.value.status, caught.value.error_code) == (401, "device_revoked")
    assert "vouchsim companion forget" in caught.value.hint


async def test_forget_revokes_this_device(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    done = await client.forget()
    assert (done.device_id, done.connections_cut) == ("dev_1", [])
    request = server.requests[-1]
    assert (request.method, request.url.raw_path) == ("DELETE", b"/device/me")
    assert verify_request(request, server.devices["dev_1"].public_key)
    with pytest.raises(errors.DeviceRevokedError):
        await client.me()


@pytest.mark.parametrize(
    ("plan", "cls", "match"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), errors.ServerUnreachableError, "Could not connect"),
        (httpx.ConnectTimeout("timed out"), errors.ServerTimeoutError, "did not answer in time"),
        (httpx.Response(401, json={"error": "invalid_signature"}), errors.InvalidSignatureError, "signature"),
        (httpx.Response(404, json={"error": "not_found", "error_description": "No."}), errors.ApiError, "No."),
        (httpx.Response(502, html="<h1>Bad gateway</h1>"), errors.UnexpectedResponseError, "HTTP 502"),
        (httpx.Response(200, json={"delegations": []}), errors.UnexpectedResponseError, "not text/event-stream"),
    ],
)
async def test_a_stream_that_does_not_open(
    client: DeviceApiClient,
    server: FakeDeviceServer,
    plan: httpx.Response | Exception,
    cls: type[Exception],
    match: str,
) -> None:
    server.stream_connects = [plan]
    opened: list[int] = []
    with pytest.raises(cls, match=match) as caught:
        await collect(client, opened)
    assert type(caught.value) is cls
    assert opened == []


async def test_a_stream_timing_out_mid_way_is_a_timeout(client: DeviceApiClient, server: FakeDeviceServer) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b": keep-alive\n\n"
        raise httpx.ReadTimeout("no keep-alive")

    headers = {"content-type": "text/event-stream"}
    server.stream_connects = [httpx.Response(200, headers=headers, content=stalls())]
    with pytest.raises(errors.ServerTimeoutError, match=r"delegation stream from http://127\.0\.0\.1:8741"):
        await collect(client)


async def test_other_events_are_ignored_and_bad_delegations_refused(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    good = server.public(server.add_delegation())

    async def events() -> AsyncIterator[bytes]:
        yield sse("hello", {"x": 1}) + b"data: no event name\n\n"
        yield b"event: delegation\r\ndata: " + json.dumps(good).encode() + b"\r\n\r\n"
        yield sse("delegation", {"delegation_id": "dlg_2"})

    headers = {"content-type": "text/event-stream; charset=utf-8"}
    server.stream_connects = [httpx.Response(200, headers=headers, content=events())]
    seen: list[Delegation] = []
    with pytest.raises(errors.UnexpectedResponseError, match="delegation event"):
        await collect(client, seen=seen)
    assert ids(seen) == ["dlg_1"]


async def test_a_pending_delegation_is_found_without_listing_everything(
    client: DeviceApiClient, server: FakeDeviceServer
) -> None:
    server.add_delegation()
    sent = len(server.requests)
    assert (await client.delegation("dlg_1")).status == "pending"
    assert [r.url.params["status"] for r in server.requests[sent:]] == ["pending"]


@pytest.mark.parametrize(("extra", "reported"), [({"status": "expired"}, "expired"), ({}, None), ({"status": 3}, None)])
async def test_delegation_closed_reports_the_status_the_body_gives(
    client: DeviceApiClient, server: FakeDeviceServer, extra: dict[str, object], reported: str | None
) -> None:
    server.next_error = httpx.Response(
        409, json={"error": "delegation_closed", "error_description": "Closed.", **extra}
    )
    with pytest.raises(errors.DelegationClosedError, match="Closed") as caught:
        await client.revoke_delegation("dlg_1")
    assert caught.value.delegation_status == reported
