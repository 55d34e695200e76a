"""Delegation token algorithms per audience (`alg` in the audience file), and expiring what a clock move made due."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from server.tests.delegation_support import ISSUER, World, ask, decide
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.delegation.audiences import Audience, AudienceRegistry
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import ALGORITHMS, mint

pytestmark = pytest.mark.anyio

SCOPES = ["payments.identity", "payments.prepare"]


@pytest.fixture
def registry() -> AudienceRegistry:
    return AudienceRegistry(
        Audience(audience_id=f"aud_{alg.lower()}", name=alg, scopes=tuple(SCOPES), alg=alg) for alg in ALGORITHMS
    )


async def token_for(service: DelegationService, world: World, alg: str) -> str:
    view = await decide(service, world.phone, await ask(service, world.runtime, audience_id=f"aud_{alg.lower()}"))
    issued = await service.token(view, issuer=ISSUER)
    assert issued is not None
    return issued.token


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_each_audience_gets_its_algorithm_and_its_tokens_introspect(
    service: DelegationService, world: World, alg: str
) -> None:
    await service.prepare()
    token = await token_for(service, world, alg)
    keys = KeySet.import_key_set(await service.jwks())
    # joserfc warns on every use of the name EdDSA (RFC 9864); the server silences it, a verifier may not.
    with pytest.warns(SecurityWarning) if alg == "EdDSA" else nullcontext():
        decoded = jwt.decode(token, keys, algorithms=[alg])
    assert decoded.header["alg"] == alg
    published = next(key for key in (await service.jwks())["keys"] if key["kid"] == decoded.header["kid"])
    assert published["alg"] == alg
    claims = await service.introspect(token, issuer=ISSUER)
    assert claims is not None and claims["active"] is True and claims["aud"] == f"aud_{alg.lower()}"


async def test_a_token_cannot_borrow_a_key_under_another_algorithms_name(
    service: DelegationService, world: World, keys: Any
) -> None:
    """The EdDSA key signs an Ed25519-named token: same curve, but that key is published for EdDSA only."""
    await service.prepare()
    genuine = await token_for(service, world, "Ed25519")
    claims = jwt.decode(genuine, KeySet.import_key_set(await service.jwks()), algorithms=["Ed25519"]).claims
    async with service._unit() as unit:  # the key itself, to forge with
        eddsa_key = await keys.signing_key(unit.keys, "EdDSA")
    forged = mint(eddsa_key, claims, "Ed25519")
    assert await service.introspect(forged, issuer=ISSUER) is None


async def test_expire_due_answers_a_waiting_call_at_once(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    view = await ask(service, world.runtime, audience_id="aud_ed25519")
    waiting = asyncio.create_task(
        service.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=50)
    )
    await asyncio.sleep(0.05)  # it is waiting (on its 50 s budget and the delegation's 300 s)
    assert not waiting.done()
    assert await service.expire_due() == 0  # nothing is due yet
    clock.advance(300)
    assert await service.expire_due() == 1
    answered = await asyncio.wait_for(waiting, 5)  # a hang guard, not a timing check
    assert answered.status == "expired"
    assert await service.expire_due() == 0
