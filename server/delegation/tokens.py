"""Delegation tokens (docs/delegations.md, "The delegation token"): JWTs signed with Ed25519 (RFC 8037,
`alg: "Ed25519"` per RFC 9864), `kid` = the key's RFC 7638 thumbprint, published in `/.well-known/jwks.json`
(RFC 7517).

Signing keys are made on first start and kept in the database, the private half AES-GCM sealed under a key
derived from the server's HMAC key. The newest unretired key signs. `rotate` makes a new key and retires the
old one, whose public half stays published for a token lifetime plus a margin, so tokens in flight keep
verifying. The current key is read from the database on every use (never cached), so a rotation made by one
instance is followed by every instance at once; only unsealed keys, immutable per kid, are cached.

Claims: `iss`, a pairwise `sub` (one per user and audience, so two audiences cannot correlate users), `aud`,
`scope`, `act` (RFC 8693 §4.1: the client acting for the user), `delegation_id`, `jti`, `iat`, `nbf`, `exp`.
Minting is deterministic for a delegation and a key: Ed25519 signatures are, and the claims come from the record.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import seal, unseal
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import SigningKey
from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository

log = logging.getLogger("vouchsim.delegation")

ALGORITHM = "Ed25519"
SEAL_PURPOSE = "signing-key"
# How long a retired key stays published beyond the longest token it may have signed (clock skew, caches).
RETIREMENT_MARGIN = timedelta(seconds=120)


def delegation_claims(
    *,
    issuer: str,
    subject: str,
    audience_id: str,
    scopes: list[str],
    client_id: str,
    client_name: str,
    delegation_id: str,
    jti: str,
    issued_at: datetime,
    expires_at: datetime,
) -> dict[str, Any]:
    issued = int(issued_at.timestamp())
    return {
        "iss": issuer,
        "sub": subject,
        "aud": audience_id,
        "scope": " ".join(scopes),
        "act": {"sub": client_id, "client_name": client_name},
        "delegation_id": delegation_id,
        "jti": jti,
        "iat": issued,
        "nbf": issued,
        "exp": int(expires_at.timestamp()),
    }


def kid_of(key: OKPKey) -> str:
    kid = key.kid
    assert kid is not None  # every key made here carries its thumbprint as kid
    return kid


def mint(key: OKPKey, claims: dict[str, Any]) -> str:
    header = {"alg": ALGORITHM, "kid": kid_of(key), "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def verified_claims(token: str, keys: KeySet) -> dict[str, Any] | None:
    """The claims of a JWT signed by one of `keys` with Ed25519; None for anything else. Times are not checked."""
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    if decoded.header.get("alg") != ALGORITHM or not isinstance(decoded.header.get("kid"), str):
        return None
    return dict(decoded.claims)


class SigningKeyStore:
    """The signing keys, over whichever repository the caller's unit of work provides."""

    def __init__(self, hmac_key: bytes, clock: Clock, settings: Settings) -> None:
        self._secret = hmac_key.hex()
        self.clock = clock
        self.settings = settings
        self._unsealed: dict[str, OKPKey] = {}

    async def signing_key(self, keys: SigningKeyRepository) -> OKPKey:
        """The current key; made on first use, and replaced if it can no longer be unsealed."""
        row = await keys.current()
        if row is None:
            return await self._create(keys)
        key = self._open(row)
        if key is not None:
            return key
        log.warning("signing key %s cannot be unsealed (was the secret key changed?): rotating", row.kid)
        return await self._replace(keys, row)

    async def rotate(self, keys: SigningKeyRepository) -> str:
        """A new current key; the old one stays published until every token it signed has expired."""
        row = await keys.current()
        key = await self._create(keys) if row is None else await self._replace(keys, row)
        return kid_of(key)

    async def jwks(self, keys: SigningKeyRepository) -> dict[str, Any]:
        rows = await keys.published(self.clock.now())
        return {"keys": [dict(row.public_jwk) for row in rows]}

    async def key_set(self, keys: SigningKeyRepository) -> KeySet:
        rows = await keys.published(self.clock.now())
        return KeySet([OKPKey.import_key(dict(row.public_jwk)) for row in rows])

    async def _replace(self, keys: SigningKeyRepository, old: SigningKey) -> OKPKey:
        now = self.clock.now()
        key = await self._create(keys)
        publish_until = now + timedelta(seconds=self.settings.delegation_token_ttl) + RETIREMENT_MARGIN
        await keys.retire(old.kid, now, publish_until)
        return key

    async def _create(self, keys: SigningKeyRepository) -> OKPKey:
        generated = OKPKey.generate_key("Ed25519")
        kid = generated.thumbprint()
        private = {**generated.as_dict(private=True), "kid": kid}
        key = OKPKey.import_key(private)
        public = {**generated.as_dict(private=False), "kid": kid, "alg": ALGORITHM, "use": "sig"}
        sealed = seal(self._secret, SEAL_PURPOSE, json.dumps(private).encode())
        await keys.add(
            SigningKey(
                kid=kid,
                algorithm=ALGORITHM,
                public_jwk=public,
                private_sealed=sealed,
                created_at=self.clock.now(),
            )
        )
        self._unsealed[kid] = key
        return key

    def _open(self, row: SigningKey) -> OKPKey | None:
        cached = self._unsealed.get(row.kid)
        if cached is not None:
            return cached
        plain = unseal(self._secret, SEAL_PURPOSE, row.private_sealed)
        if plain is None:
            return None
        key = OKPKey.import_key(json.loads(plain))
        self._unsealed[row.kid] = key
        return key
