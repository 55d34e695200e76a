"""The delegation service walked through every edge, with the agent's and the device's views of it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.tests.delegation_support import PURPOSE, World, ask, decide, sign, statement, wire
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.delegation.errors import (
    DelegationClosed,
    DelegationNotFound,
    InvalidDecision,
    InvalidDelegationRequest,
    ScopeNotAllowed,
    UnknownAudience,
)
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.storage.models import Delegation

pytestmark = pytest.mark.anyio


async def stored(sessions: async_sessionmaker[AsyncSession], delegation_id: str) -> Delegation:
    async with sessions() as session:
        row = await session.scalar(select(Delegation).where(Delegation.id == delegation_id))
        assert row is not None
        return row


# -- asking --------------------------------------------------------------------------------------------------


async def test_a_request_is_pending_with_everything_the_device_shows(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    view = await ask(service, world.runtime)
    assert view.status == "pending"
    assert re.fullmatch(r"dlg_[A-Za-z0-9_-]{22,}", view.delegation_id)
    assert (view.client_id, view.client_name, view.connection_id) == (
        world.runtime.client_id,
        "Acme Agent",
        world.runtime.connection_id,
    )
    assert (view.audience_id, view.audience_name) == ("aud_test_payments", "Test payments")
    assert view.scopes == ("payments.identity", "payments.prepare")
    assert view.purpose == PURPOSE
    assert re.fullmatch(r"[a-z]+-[a-z]+-[0-9]{2}", view.binding_message)
    assert view.created_at == clock.now()
    assert view.expires_at == clock.now() + timedelta(seconds=300)
    assert (view.decided_at, view.decided_by, view.token_expires_at) == (None, None, None)


async def test_the_expiry_is_printed_in_whole_seconds(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", wire(view)["expires_at"])


async def test_an_unknown_audience_is_refused(service: DelegationService, world: World) -> None:
    with pytest.raises(UnknownAudience) as caught:
        await ask(service, world.runtime, audience_id="aud_nope")
    assert caught.value.code == "unknown_audience" and caught.value.status == 400


@pytest.mark.parametrize("scopes", [["payments.refund"], ["payments.identity", "calendar.read"], ["identity"]])
async def test_a_scope_outside_the_audience_is_refused(
    service: DelegationService, world: World, scopes: list[str]
) -> None:
    with pytest.raises(ScopeNotAllowed) as caught:
        await ask(service, world.runtime, scopes=scopes)
    assert caught.value.code == "scope_not_allowed"
    assert "payments.identity, payments.prepare" in caught.value.description


async def test_other_audiences_offer_their_own_scopes(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime, audience_id="aud_test_files", scopes=["files.read"])
    assert (view.audience_name, view.scopes) == ("Test files", ("files.read",))
    with pytest.raises(ScopeNotAllowed):
        await ask(service, world.runtime, audience_id="aud_test_calendar", scopes=["payments.identity"])


async def test_repeated_scopes_are_asked_once(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime, scopes=["payments.prepare", "payments.identity", "payments.prepare"])
    assert view.scopes == ("payments.prepare", "payments.identity")


@pytest.mark.parametrize(
    ("purpose", "scopes"),
    [("", None), ("   ", None), ("x" * 501, None), ("beep\x07", None), (PURPOSE, [])],
)
async def test_an_invalid_request_is_refused(
    service: DelegationService, world: World, purpose: str, scopes: list[str] | None
) -> None:
    with pytest.raises(InvalidDelegationRequest) as caught:
        await ask(service, world.runtime, purpose=purpose, scopes=scopes)
    assert caught.value.code == "invalid_request"


async def test_a_purpose_is_trimmed_and_may_span_lines(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime, purpose="  Pay the invoice.\nAmount: 12 €  ")
    assert view.purpose == "Pay the invoice.\nAmount: 12 €"
    assert len((await ask(service, world.runtime, purpose="y" * 500)).purpose) == 500


# -- reading -------------------------------------------------------------------------------------------------


async def test_a_runtime_sees_only_its_own_delegations(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    assert await service.get(view.delegation_id, connection_id=world.runtime.connection_id) == view
    for connection_id in (world.strangers_runtime.connection_id, "conn_nope"):
        with pytest.raises(DelegationNotFound):
            await service.get(view.delegation_id, connection_id=connection_id)
    with pytest.raises(DelegationNotFound) as caught:
        await service.get("dlg_nope", connection_id=world.runtime.connection_id)
    assert (caught.value.code, caught.value.status) == ("delegation_not_found", 404)


async def test_pending_to_expired_when_read_after_its_expiry(
    service: DelegationService, world: World, clock: FrozenClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    view = await ask(service, world.runtime)
    clock.advance(299)
    assert (await service.get(view.delegation_id, connection_id=world.runtime.connection_id)).status == "pending"
    clock.advance(1)
    assert (await service.get(view.delegation_id, connection_id=world.runtime.connection_id)).status == "expired"
    assert (await stored(sessions, view.delegation_id)).status == "expired"
    with pytest.raises(DelegationClosed) as caught:
        await decide(service, world.phone, view)
    assert caught.value.delegation_status == "expired"


# -- the device decides --------------------------------------------------------------------------------------


async def test_pending_to_approved_keeps_the_signed_statement_as_evidence(
    service: DelegationService, world: World, clock: FrozenClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    view = await ask(service, world.runtime)
    clock.advance(12)
    approved = await decide(service, world.phone, view)
    assert approved.status == "approved"
    assert approved.decided_at == clock.now()
    assert approved.decided_by == world.phone.device_id
    assert approved.token_expires_at == clock.now() + timedelta(seconds=600)
    row = await stored(sessions, view.delegation_id)
    assert row.decision_nonce is not None and row.decision_signature is not None and row.token_jti is not None
    assert row.decision_statement == statement(wire(view), "approve", row.decision_nonce).decode()


async def test_pending_to_denied(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    denied = await decide(service, world.phone, view, "deny")
    assert (denied.status, denied.decided_by, denied.token_expires_at) == ("denied", world.phone.device_id, None)


async def test_a_second_decision_finds_it_closed(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    await decide(service, world.phone, view)
    with pytest.raises(DelegationClosed) as caught:
        await decide(service, world.phone, view, "deny")
    assert (caught.value.code, caught.value.status, caught.value.delegation_status) == (
        "delegation_closed",
        409,
        "approved",
    )


async def test_another_users_device_cannot_decide(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    with pytest.raises(DelegationNotFound):
        await decide(service, world.stranger, view)


# -- the agent withdraws -------------------------------------------------------------------------------------


async def test_pending_to_cancelled_by_the_agent_idempotently(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    conn = world.runtime.connection_id
    assert (await service.withdraw(view.delegation_id, connection_id=conn)).status == "cancelled"
    assert (await service.withdraw(view.delegation_id, connection_id=conn)).status == "cancelled"
    with pytest.raises(DelegationClosed):
        await decide(service, world.phone, view)


async def test_approved_to_revoked_by_the_agent_idempotently(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    await decide(service, world.phone, view)
    conn = world.runtime.connection_id
    revoked = await service.withdraw(view.delegation_id, connection_id=conn)
    assert revoked.status == "revoked"
    assert await service.withdraw(view.delegation_id, connection_id=conn) == revoked


@pytest.mark.parametrize("final", ["denied", "expired"])
async def test_withdrawing_a_closed_delegation_changes_nothing(
    service: DelegationService, world: World, clock: FrozenClock, final: str
) -> None:
    view = await ask(service, world.runtime)
    if final == "denied":
        await decide(service, world.phone, view, "deny")
    else:
        clock.advance(300)
    assert (await service.withdraw(view.delegation_id, connection_id=world.runtime.connection_id)).status == final


async def test_a_runtime_cannot_withdraw_another_runtimes_delegation(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    with pytest.raises(DelegationNotFound):
        await service.withdraw(view.delegation_id, connection_id=world.strangers_runtime.connection_id)


# -- the device revokes --------------------------------------------------------------------------------------


async def test_approved_to_revoked_by_the_device_idempotently(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    await decide(service, world.phone, view)
    user = world.phone.user_id
    revoked = await service.revoke_by_device(user_id=user, delegation_id=view.delegation_id)
    assert revoked.status == "revoked"
    assert await service.revoke_by_device(user_id=user, delegation_id=view.delegation_id) == revoked


async def test_the_device_denies_a_pending_delegation_rather_than_revoking_it(
    service: DelegationService, world: World
) -> None:
    view = await ask(service, world.runtime)
    with pytest.raises(InvalidDelegationRequest):
        await service.revoke_by_device(user_id=world.phone.user_id, delegation_id=view.delegation_id)


@pytest.mark.parametrize("final", ["denied", "cancelled"])
async def test_a_closed_delegation_cannot_be_revoked(service: DelegationService, world: World, final: str) -> None:
    view = await ask(service, world.runtime)
    if final == "denied":
        await decide(service, world.phone, view, "deny")
    else:
        await service.withdraw(view.delegation_id, connection_id=world.runtime.connection_id)
    with pytest.raises(DelegationClosed) as caught:
        await service.revoke_by_device(user_id=world.phone.user_id, delegation_id=view.delegation_id)
    assert caught.value.delegation_status == final


async def test_another_user_cannot_revoke(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    await decide(service, world.phone, view)
    with pytest.raises(DelegationNotFound):
        await service.revoke_by_device(user_id=world.stranger.user_id, delegation_id=view.delegation_id)


# -- the device lists ----------------------------------------------------------------------------------------


async def test_lists_are_newest_first_and_split_pending_from_history(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    first = await ask(service, world.runtime)
    clock.advance(1)
    second = await ask(service, world.runtime, audience_id="aud_test_files", scopes=["files.list"])
    clock.advance(1)
    third = await ask(service, world.runtime)
    await ask(service, world.strangers_runtime)
    await decide(service, world.phone, second, "deny")
    user = world.phone.user_id
    assert [v.delegation_id for v in await service.list_for_user(user, "pending")] == [
        third.delegation_id,
        first.delegation_id,
    ]
    assert [v.delegation_id for v in await service.list_for_user(user, "history")] == [second.delegation_id]
    assert [v.delegation_id for v in await service.list_for_user(user, "all")] == [
        third.delegation_id,
        second.delegation_id,
        first.delegation_id,
    ]


async def test_listing_expires_what_is_due(service: DelegationService, world: World, clock: FrozenClock) -> None:
    view = await ask(service, world.runtime)
    clock.advance(300)
    assert await service.list_for_user(world.phone.user_id, "pending") == []
    assert [v.status for v in await service.list_for_user(world.phone.user_id, "history")] == ["expired"]
    assert (await service.get(view.delegation_id, connection_id=world.runtime.connection_id)).status == "expired"


async def test_an_unknown_list_is_refused(service: DelegationService, world: World) -> None:
    with pytest.raises(InvalidDelegationRequest):
        await service.list_for_user(world.phone.user_id, "decided")


async def test_a_decision_and_a_withdrawal_read_the_delegation_once(make_service: Any, world: World) -> None:
    """One read before the compare-and-swap, none after it: the CAS itself brings the row up to date."""
    from vouchsim.server.storage.repositories.delegations import DelegationRepository, DelegationRow
    from vouchsim.server.storage.session import DbSession

    reads: list[str] = []

    class Counting(DelegationRepository):
        async def get(self, delegation_id: str) -> DelegationRow | None:
            reads.append("get")
            return await super().get(delegation_id)

        async def for_decision(self, delegation_id: str, **kwargs: Any) -> Any:
            reads.append("for_decision")
            return await super().for_decision(delegation_id, **kwargs)

    def counting(session: DbSession) -> DelegationRepository:
        return Counting(session)

    service = make_service(repository=counting)
    approved = await ask(service, world.runtime)
    reads.clear()
    assert (await decide(service, world.phone, approved)).status == "approved"
    assert reads == ["for_decision"]
    reads.clear()
    withdrawn = await service.withdraw(approved.delegation_id, connection_id=world.runtime.connection_id)
    assert withdrawn.status == "revoked" and reads == ["get"]


async def test_a_decision_builds_no_aliased_statement_per_call(
    service: DelegationService, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision's one statement (with its aliased nonce check) is built once at import: constructing a fresh
    alias per decision was the largest single cost in its profile."""
    from vouchsim.server.storage.repositories import delegations

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("an alias was built for one decision")

    monkeypatch.setattr(delegations._TABLE, "alias", refuse)
    monkeypatch.setattr(delegations, "_decision_statement", refuse)
    approved = await ask(service, world.runtime)
    assert (await decide(service, world.phone, approved)).status == "approved"


async def test_a_decision_whose_request_nonce_was_remembered_meanwhile_is_a_replay(
    service: DelegationService, world: World, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    """On PostgreSQL a decision's request nonce is remembered by its compare-and-swap; if the same request got there
    first (after this one's read), nothing changes and `remember` says why (the device layer's replay error). On
    SQLite the nonce is remembered before the decision, as for any request: nothing is left to race."""
    from vouchsim.server.delegation.service import Admitted
    from vouchsim.server.storage.repositories.devices import DeviceRepository, DeviceSigner, RequestNonce

    view = await ask(service, world.runtime)
    signed = sign(world.phone.key, wire(view), "approve")
    nonce = RequestNonce(world.phone.device_id, "request-nonce-" + "x" * 16, clock.now() + timedelta(minutes=5))
    async with sessions() as session, session.begin():
        devices = DeviceRepository(session)

        async def remember() -> None:
            if not await devices.remember_nonce(*nonce):
                raise InvalidDecision("replayed")  # what the device layer would raise: InvalidSignature

        async def admit(_: DeviceSigner | None, seen: bool | None) -> Admitted:
            if seen is None:
                return Admitted(world.phone.user_id)
            assert seen is False
            assert await devices.remember_nonce(*nonce)  # the same request, in between
            return Admitted(world.phone.user_id, nonce, remember)

        decide_signed = service.within(session).decide_signed(
            device_id=world.phone.device_id,
            delegation_id=view.delegation_id,
            decision="approve",
            nonce=signed.nonce,
            signature=signed.signature,
            admit=admit,
            request_nonce=nonce.nonce,
        )
        if session.get_bind().dialect.name == "postgresql":
            with pytest.raises(InvalidDecision, match="replayed"):
                await decide_signed
            expected = "pending"
        else:
            await decide_signed
            expected = "approved"
    assert (await stored(sessions, view.delegation_id)).status == expected
