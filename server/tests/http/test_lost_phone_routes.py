"""A lost phone (docs/security.md "Lost phone"): `DELETE /device/me` revokes the device that signs it; its key is
refused with `device_revoked`, its event stream ends, its user's pending delegations are denied, and the
connections it paired survive unless cut. And RFC 7009 for delegation tokens at `/oauth/revoke`."""

# ruff: noqa: F811 - the fixtures of test_delegation_device_routes, imported by name, are parameters here

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.tests.http.test_delegation_device_routes import (  # noqa: F401 - fixtures
    Client,
    Paired,
    api,
    approve,
    assert_error,
    delegation_token,
    delegations,
    introspect,
    on_app,
    open_stream,
    paired,
    send,
    sessions,
    signed_body,
    stranger,
)
from server.tests.pairing_support import SigningDevice
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.storage.models import Device

pytestmark = pytest.mark.anyio


async def connections(api: Client, phone: SigningDevice) -> list[dict[str, Any]]:
    listed = await send(api, phone, "GET", "/device/connections")
    assert listed.status_code == 200, listed.text
    return listed.json()["connections"]  # type: ignore[no-any-return]


async def test_a_device_forgets_itself_and_its_key_stops_working(api: Client, paired: Paired) -> None:
    pending = paired.ask()
    waiting = on_app(api, lambda: delegations(api).get(pending.delegation_id, connection_id=paired.connection_id))
    assert waiting.status == "pending"

    forgotten = await send(api, paired.phone, "DELETE", "/device/me")
    assert forgotten.status_code == 200, forgotten.text
    body = forgotten.json()
    assert body["device_id"] == paired.phone.device_id
    assert body["revoked_at"] == "2026-11-25T12:00:00Z"
    assert body["connections_cut"] == []  # the default: what it paired survives
    assert body["delegations_denied"] == [pending.delegation_id]  # nobody is left to decide it

    for method, target in (("GET", "/device/me"), ("GET", "/device/delegations"), ("DELETE", "/device/me")):
        refused = assert_error(await send(api, paired.phone, method, target), 401, "device_revoked")
        assert "revoked" in refused["error_description"]
    # Anyone else signing as this device learns nothing about it.
    impostor = SigningDevice(paired.phone.clock, device_id=paired.phone.device_id)
    assert_error(await send(api, impostor, "GET", "/device/me"), 401, "invalid_signature")

    denied = on_app(api, lambda: delegations(api).get(pending.delegation_id, connection_id=paired.connection_id))
    assert (denied.status, denied.decided_by) == ("denied", None)  # no signed statement: the revocation denied it
    # A new request finds nobody to ask: denied at once, rather than left pending until it expires.
    later = paired.ask()
    assert (later.status, later.decided_by) == ("denied", None)


async def test_forgetting_can_cut_the_connections_it_paired(
    api: Client, paired: Paired, stranger: Paired, clock: FrozenClock
) -> None:
    clock.advance(60)
    cut = await send(api, paired.phone, "DELETE", "/device/me?cut_connections=true")
    assert cut.status_code == 200, cut.text
    assert cut.json()["connections_cut"] == [paired.connection_id]
    assert cut.json()["revoked_at"] == "2026-11-25T12:01:00Z"
    # Another user's device and connections are untouched.
    [theirs] = await connections(api, stranger.phone)
    assert theirs["revoked_at"] is None
    assert_error(await send(api, paired.phone, "DELETE", "/device/me?cut_connections=maybe"), 400, "invalid_request")


async def test_the_event_stream_ends_when_the_device_is_revoked(api: Client, paired: Paired) -> None:
    stream = await open_stream(api, paired.phone)
    try:
        assert stream.status == 200
        forgotten = await send(api, paired.phone, "DELETE", "/device/me")
        assert forgotten.status_code == 200, forgotten.text
        last = await stream.next_event()
        assert last["event"] == "device_revoked"
        assert json.loads(last["data"])["error"] == "device_revoked"
        # The server ends the stream by itself: the body's last message, without the client hanging up.
        rest = await anyio.to_thread.run_sync(lambda: stream.messages.get(timeout=5))
        assert (rest["type"], rest["body"], rest["more_body"]) == ("http.response.body", b"", False)
    finally:
        await stream.close()
    again = await open_stream(api, paired.phone)
    try:
        assert again.status == 401
    finally:
        await again.close()


async def test_a_revoked_device_cannot_decide(
    api: Client, paired: Paired, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    # Revoked behind the service's back (no denial of pending ones): the key alone must not decide any more.
    async with sessions() as session, session.begin():
        await session.execute(update(Device).where(Device.id == paired.phone.device_id).values(revoked_at=clock.now()))
    target = f"/device/delegations/{view.delegation_id}/decision"
    assert_error(await send(api, paired.phone, "POST", target, signed_body(paired.phone, shown)), 401, "device_revoked")
    still = on_app(api, lambda: delegations(api).get(view.delegation_id, connection_id=paired.connection_id))
    assert still.status == "pending"


# -- RFC 7009 for delegation tokens --------------------------------------------------------------------------


async def revoke(api: Client, token: str, client_id: str) -> None:
    response = await api.post("/oauth/revoke", data={"token": token, "client_id": client_id})
    assert response.status_code == 200, response.text


async def test_the_agent_client_holding_a_delegation_token_revokes_it(api: Client, paired: Paired) -> None:
    view = await approve(api, paired)
    token = await delegation_token(api, view)
    assert (await introspect(api, token))["active"] is True
    await revoke(api, token, paired.client_id)
    assert await introspect(api, token) == {"active": False}
    after = on_app(api, lambda: delegations(api).get(view.delegation_id, connection_id=paired.connection_id))
    assert after.status == "revoked"  # as the delegation_revoke tool leaves it
    await revoke(api, token, paired.client_id)  # again: still 200, nothing more happens


async def test_a_delegation_token_revoked_by_another_client_is_ignored(
    api: Client, paired: Paired, stranger: Paired
) -> None:
    view = await approve(api, paired)
    token = await delegation_token(api, view)
    await revoke(api, token, stranger.client_id)  # RFC 7009 §2.2: 200, and nothing happens
    assert (await introspect(api, token))["active"] is True
    still = on_app(api, lambda: delegations(api).get(view.delegation_id, connection_id=paired.connection_id))
    assert still.status == "approved"
