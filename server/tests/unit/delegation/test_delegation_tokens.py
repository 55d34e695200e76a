"""Delegation tokens: claims per docs/delegations.md, verified with joserfc against the published JWKS; key
rotation that keeps tokens in flight verifiable; online introspection that sees revocation."""

from __future__ import annotations

import asyncio
import warnings
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, SecurityWarning
from joserfc.jwk import KeySet, OKPKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.tests.delegation_support import HMAC_KEY, ISSUER, World, ask, decide
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.subjects import audience_subject
from vouchsim.server.delegation.schemas import DelegationView, IssuedToken
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import ALGORITHMS, RETIREMENT_MARGIN, SigningKeyStore, kid_of, mint
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import SigningKey

pytestmark = pytest.mark.anyio


async def approved(service: DelegationService, world: World, **ask_args: Any) -> DelegationView:
    return await decide(service, world.phone, await ask(service, world.runtime, **ask_args))


async def issued(service: DelegationService, view: DelegationView) -> IssuedToken:
    token = await service.token(view, issuer=ISSUER)
    assert token is not None
    return token


def verify(token: str, jwks: dict[str, Any]) -> jwt.Token:
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["Ed25519"])


async def test_the_token_carries_the_documented_claims(service: DelegationService, world: World) -> None:
    view = await approved(service, world)
    token = await issued(service, view)
    decoded = verify(token.token, await service.jwks())
    assert decoded.header["alg"] == "Ed25519"
    assert decoded.header["kid"] in {key["kid"] for key in (await service.jwks())["keys"]}
    claims = decoded.claims
    assert view.decided_at is not None and view.token_expires_at is not None
    assert claims == {
        "iss": ISSUER,
        "sub": audience_subject(HMAC_KEY, world.phone.user_id, "aud_test_payments"),
        "aud": "aud_test_payments",
        "scope": "payments.identity payments.prepare",
        "act": {"sub": world.runtime.client_id, "client_name": "Acme Agent"},
        "delegation_id": view.delegation_id,
        "jti": claims["jti"],
        "iat": int(view.decided_at.timestamp()),
        "nbf": int(view.decided_at.timestamp()),
        "exp": int(view.token_expires_at.timestamp()),
    }
    assert claims["exp"] - claims["iat"] == 600
    assert (token.expires_at, token.token_type) == (view.token_expires_at, "JWT")


async def test_the_subject_is_pairwise_per_audience(service: DelegationService, world: World) -> None:
    payments = verify((await issued(service, await approved(service, world))).token, await service.jwks())
    again = verify((await issued(service, await approved(service, world))).token, await service.jwks())
    files = await approved(service, world, audience_id="aud_test_files", scopes=["files.read"])
    other = verify((await issued(service, files)).token, await service.jwks())
    assert payments.claims["sub"] == again.claims["sub"]
    assert payments.claims["sub"] != other.claims["sub"]
    assert world.phone.user_id not in {payments.claims["sub"], other.claims["sub"]}
    assert payments.claims["jti"] != again.claims["jti"]


async def test_minting_is_deterministic_for_a_delegation(service: DelegationService, world: World) -> None:
    view = await approved(service, world)
    assert (await issued(service, view)).token == (await issued(service, view)).token


async def test_no_token_unless_approved_and_live(service: DelegationService, world: World, clock: FrozenClock) -> None:
    pending = await ask(service, world.runtime)
    assert await service.token(pending, issuer=ISSUER) is None
    denied = await decide(service, world.phone, await ask(service, world.runtime), "deny")
    assert await service.token(denied, issuer=ISSUER) is None
    view = await approved(service, world)
    await service.revoke_by_device(user_id=world.phone.user_id, delegation_id=view.delegation_id)
    assert await service.token(view, issuer=ISSUER) is None  # the stale view says approved; the record does not
    live = await approved(service, world)
    clock.advance(599)
    assert await service.token(live, issuer=ISSUER) is not None
    clock.advance(1)
    assert await service.token(live, issuer=ISSUER) is None
    assert (await service.get(live.delegation_id, connection_id=world.runtime.connection_id)).status == "approved"


async def test_a_token_for_another_runtime_is_not_handed_out(service: DelegationService, world: World) -> None:
    view = await approved(service, world)
    forged = DelegationView(**{**{f: getattr(view, f) for f in view.__struct_fields__}, "connection_id": "conn_x"})
    assert await service.token(forged, issuer=ISSUER) is None


# -- keys ----------------------------------------------------------------------------------------------------


async def count_keys(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(SigningKey)) or 0)


async def test_the_first_key_is_made_once(
    service: DelegationService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await service.prepare()
    await service.prepare()
    jwks = await service.jwks()
    assert await count_keys(sessions) == 4  # one per algorithm an audience may ask for
    by_alg = {key["alg"]: key for key in jwks["keys"]}
    assert sorted(by_alg) == sorted(ALGORITHMS)
    key = by_alg["Ed25519"]
    assert {key["kty"], key["crv"], key["alg"], key["use"]} == {"OKP", "Ed25519", "sig"}
    assert (by_alg["EdDSA"]["crv"], by_alg["ES256"]["crv"], by_alg["RS256"]["kty"]) == ("Ed25519", "P-256", "RSA")
    assert not [k for k in jwks["keys"] if {"d", "p", "q"} & set(k)]  # never the private half
    assert key["kid"] == OKPKey.import_key(key).thumbprint()  # RFC 7638
    assert len({k["kid"] for k in jwks["keys"]}) == 4  # EdDSA has a key of its own, not Ed25519's again


async def test_startup_makes_the_keys_audiences_use_and_the_jwks_the_others(
    service: DelegationService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An RSA key takes ~60 ms of CPU to make: only an audience naming RS256 makes it at startup."""
    assert {audience.alg for audience in service.audiences} == {"Ed25519"}
    await service.prepare()
    assert await count_keys(sessions) == 1
    jwks, again = await asyncio.gather(service.jwks(), service.jwks())  # two first requests make one key each
    assert sorted(key["alg"] for key in jwks["keys"]) == sorted(ALGORITHMS)
    assert again == jwks and await count_keys(sessions) == 4


async def test_the_private_key_is_stored_sealed(
    service: DelegationService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await service.prepare()
    async with sessions() as session:
        row = await session.scalar(select(SigningKey))
    assert row is not None and '"d"' not in row.private_sealed and "d" not in row.public_jwk


def ed25519_kids(jwks: dict[str, Any]) -> set[str]:
    return {key["kid"] for key in jwks["keys"] if key["alg"] == "Ed25519"}


async def test_rotation_keeps_tokens_in_flight_verifiable(
    service: DelegationService, world: World, clock: FrozenClock, settings: Settings
) -> None:
    before = await issued(service, await approved(service, world))
    old_kid = verify(before.token, await service.jwks()).header["kid"]
    new_kid = await service.rotate_keys()
    after = await issued(service, await approved(service, world))
    jwks = await service.jwks()
    assert ed25519_kids(jwks) == {old_kid, new_kid}
    assert verify(after.token, jwks).header["kid"] == new_kid
    assert verify(before.token, jwks).claims["jti"]  # still verifiable after the rotation
    clock.advance(settings.delegation_token_ttl + RETIREMENT_MARGIN.total_seconds() - 1)
    assert old_kid in ed25519_kids(await service.jwks())
    clock.advance(1)
    assert ed25519_kids(await service.jwks()) == {new_kid}
    with pytest.raises(InvalidKeyIdError):  # long expired anyway: its key is gone from the JWKS
        verify(before.token, await service.jwks())


async def test_a_key_that_cannot_be_unsealed_is_replaced(
    make_service: Any, world: World, clock: FrozenClock, settings: Settings
) -> None:
    first = make_service()
    await first.prepare()
    old_kid = (await first.jwks())["keys"][0]["kid"]
    stranger_keys = SigningKeyStore(b"another secret key, not ours....", clock, settings)
    second = DelegationService(
        first.transactions, first.audiences, stranger_keys, first.events, clock, settings, HMAC_KEY
    )
    view = await approved(second, world)
    token = await issued(second, view)
    jwks = await second.jwks()
    assert verify(token.token, jwks).header["kid"] != old_kid
    assert old_kid in {key["kid"] for key in jwks["keys"]}


def test_a_foreign_key_does_not_verify() -> None:
    ours, theirs = OKPKey.generate_key("Ed25519"), OKPKey.generate_key("Ed25519")
    theirs = OKPKey.import_key({**theirs.as_dict(private=True), "kid": ours.thumbprint()})
    forged = mint(theirs, {"iss": ISSUER})
    public = OKPKey.import_key({**ours.as_dict(private=False), "kid": ours.thumbprint()})
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, KeySet([public]), algorithms=["Ed25519"])


@pytest.mark.parametrize("algorithm", ["Ed25519", "EdDSA"])
def test_an_ed25519_token_is_what_joserfc_would_write(algorithm: Any) -> None:
    """`mint` signs Ed25519 tokens without joserfc's machinery: the bytes must be joserfc's own (Ed25519 is
    deterministic), claims with non-ASCII and escaped characters included."""
    key = OKPKey.generate_key("Ed25519")
    key = OKPKey.import_key({**key.as_dict(private=True), "kid": key.thumbprint()})
    claims = {
        "iss": ISSUER,
        "act": {"sub": "vsc_1", "client_name": 'Agent “Zoë” \\ "quoted"\n\t\u2028\x7f 漢字'},
        "scope": "a b",
        "iat": 1,
        "exp": 2,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note on the EdDSA name
        expected = jwt.encode({"alg": algorithm, "kid": kid_of(key), "typ": "JWT"}, dict(claims), key, [algorithm])
    assert mint(key, claims, algorithm) == expected


# -- online verification (RFC 7662) ----------------------------------------------------------------------------


async def test_introspection_follows_the_delegation(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    view = await approved(service, world)
    token = (await issued(service, view)).token
    claims = await service.introspect(token, issuer=ISSUER)
    assert claims is not None
    assert claims["active"] is True and claims["client_id"] == world.runtime.client_id
    assert claims["delegation_id"] == view.delegation_id and claims["aud"] == "aud_test_payments"
    assert await service.introspect(token, issuer="https://elsewhere.test") is None
    await service.withdraw(view.delegation_id, connection_id=world.runtime.connection_id)
    assert await service.introspect(token, issuer=ISSUER) is None  # revoked: inactive at once


async def test_introspection_refuses_expired_tampered_and_foreign_tokens(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    token = (await issued(service, await approved(service, world))).token
    header, payload, signature = token.split(".")
    assert await service.introspect(f"{header}.{payload}.{signature[:-4]}AAAA", issuer=ISSUER) is None
    assert await service.introspect("not.a.jwt", issuer=ISSUER) is None
    foreign = OKPKey.generate_key("Ed25519")
    foreign = OKPKey.import_key({**foreign.as_dict(private=True), "kid": foreign.thumbprint()})
    claims = verify(token, await service.jwks()).claims
    assert await service.introspect(mint(foreign, claims), issuer=ISSUER) is None
    clock.advance(600)
    assert await service.introspect(token, issuer=ISSUER) is None


async def test_jwks_lists_keys_oldest_first(service: DelegationService, clock: FrozenClock) -> None:
    await service.jwks()  # a key for every algorithm
    clock.advance(1)
    newer = await service.rotate_keys()
    assert [key["kid"] for key in (await service.jwks())["keys"]][-1] == newer
    assert timedelta(0) < RETIREMENT_MARGIN


async def test_the_current_signing_key_is_looked_up_once_not_per_token(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings
) -> None:
    from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository

    class Counting(SigningKeyRepository):
        lookups = 0

        async def current(self, algorithm: str) -> SigningKey | None:
            Counting.lookups += 1
            return await super().current(algorithm)

    store = SigningKeyStore(HMAC_KEY, clock, settings)
    async with sessions() as session, session.begin():
        await store.prepare(Counting(session))
    Counting.lookups = 0
    async with sessions() as session, session.begin():
        first = await store.signing_key(Counting(session))
        again = await store.signing_key(Counting(session))
    assert first is again and Counting.lookups == 1
    async with sessions() as session, session.begin():
        rotated = await store.rotate(Counting(session))
    async with sessions() as session, session.begin():
        assert kid_of(await store.signing_key(Counting(session))) == rotated  # rotation is seen at once
