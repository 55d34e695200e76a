"""The signed decision (docs/delegations.md, "The signed decision statement"): only the enrolled device's
signature over exactly what the server sent, with a fresh nonce, decides."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.tests.delegation_support import World, ask, decide_as, new_nonce, sign, wire
from vouchsim.server.core.crypto import b64url
from vouchsim.server.delegation.errors import DelegationNotFound, InvalidDecision
from vouchsim.server.delegation.service import DelegationService

pytestmark = pytest.mark.anyio


async def submit(service: DelegationService, world: World, delegation_id: str, **values: str) -> Any:
    return await decide_as(service, world.phone.device_id, world.phone.user_id, delegation_id, **values)


async def still_pending(service: DelegationService, world: World, delegation_id: str) -> bool:
    view = await service.get(delegation_id, connection_id=world.runtime.connection_id)
    return view.status == "pending"


async def test_a_good_signature_decides(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime, purpose="Zahlung vorbereiten: Müller & Söhne")  # non-ASCII as is
    signed = sign(world.phone.key, wire(view), "approve")
    assert (await submit(service, world, view.delegation_id, **signed.body())).status == "approved"


@pytest.mark.parametrize(
    "tamper",
    [
        {"purpose": "Something else entirely."},
        {"scopes": ["payments.identity"]},
        {"audience_id": "aud_test_files"},
        {"binding_message": "amber-falcon-42"},
        {"expires_at": "2099-01-01T00:00:00Z"},
        {"delegation_id": "dlg_another"},
    ],
)
async def test_a_statement_over_other_content_is_refused(
    service: DelegationService, world: World, tamper: dict[str, Any]
) -> None:
    view = await ask(service, world.runtime)
    signed = sign(world.phone.key, {**wire(view), **tamper}, "approve")
    with pytest.raises(InvalidDecision) as caught:
        await submit(service, world, view.delegation_id, **signed.body())
    assert (caught.value.code, caught.value.status) == ("invalid_decision", 400)
    assert await still_pending(service, world, view.delegation_id)


async def test_a_deny_signature_cannot_approve(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    signed = sign(world.phone.key, wire(view), "deny")
    with pytest.raises(InvalidDecision):
        await submit(
            service, world, view.delegation_id, decision="approve", nonce=signed.nonce, signature=signed.signature
        )
    assert await still_pending(service, world, view.delegation_id)


async def test_a_signature_over_another_nonce_is_refused(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    signed = sign(world.phone.key, wire(view), "approve")
    with pytest.raises(InvalidDecision):
        await submit(
            service, world, view.delegation_id, decision="approve", nonce=new_nonce(), signature=signed.signature
        )


async def test_a_signature_by_another_key_is_refused(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    signed = sign(Ed25519PrivateKey.generate(), wire(view), "approve")
    with pytest.raises(InvalidDecision):
        await submit(service, world, view.delegation_id, **signed.body())
    assert await still_pending(service, world, view.delegation_id)


async def test_another_users_device_key_is_refused_even_for_its_own_id(
    service: DelegationService, world: World
) -> None:
    view = await ask(service, world.runtime)
    signed = sign(world.stranger.key, wire(view), "approve")
    with pytest.raises(DelegationNotFound):  # the stranger's device, as itself, cannot see it at all
        await decide_as(service, world.stranger.device_id, world.stranger.user_id, view.delegation_id, **signed.body())
    with pytest.raises(InvalidDecision):  # and its signature does not pass for our device
        await submit(service, world, view.delegation_id, **signed.body())


async def test_a_nonce_is_good_for_one_decision_only(service: DelegationService, world: World) -> None:
    first = await ask(service, world.runtime)
    second = await ask(service, world.runtime)
    nonce = new_nonce()
    await submit(service, world, first.delegation_id, **sign(world.phone.key, wire(first), "approve", nonce).body())
    reused = sign(world.phone.key, wire(second), "deny", nonce)  # a genuine signature, but an old nonce
    with pytest.raises(InvalidDecision) as caught:
        await submit(service, world, second.delegation_id, **reused.body())
    assert "nonce" in caught.value.description
    assert await still_pending(service, world, second.delegation_id)


@pytest.mark.parametrize(
    "values",
    [
        {"decision": "maybe"},
        {"decision": "APPROVE"},
        {"nonce": "short"},
        {"nonce": "not base64url!" * 3},
        {"signature": "x" * 85},
        {"signature": b64url(b"\0" * 64) + "="},
    ],
)
async def test_malformed_decisions_are_refused(
    service: DelegationService, world: World, values: dict[str, str]
) -> None:
    view = await ask(service, world.runtime)
    body = {**sign(world.phone.key, wire(view), "approve").body(), **values}
    with pytest.raises(InvalidDecision):
        await submit(service, world, view.delegation_id, **body)
    assert await still_pending(service, world, view.delegation_id)
