"""Delegation tokens (docs/delegations.md, "The delegation token"): JWTs signed, by default, with Ed25519
(RFC 8037, `alg: "Ed25519"` per RFC 9864), `kid` = the key's RFC 7638 thumbprint, published in
`/.well-known/jwks.json` (RFC 7517).

An audience may ask for another algorithm (`alg` in the audience file): `EdDSA` (the same curve under the name
RFC 8037 gave it, which verifiers such as PyJWT know), `ES256` or `RS256` (RFC 7518 §3.4, §3.3). Each algorithm
has keys of its own, all published, each JWK naming its `alg`, so a verifier picks the key by `kid` and
checks the algorithm against it.

Signing keys are made on first start (for the default algorithm and those the audiences name; the others when the
JWKS is first asked for, since an RSA key takes about 60 ms of CPU to make) and kept in the database, the private
half AES-GCM sealed under a key derived from the server's HMAC key. Per algorithm, the newest unretired key signs.
`rotate` makes a new key and retires the old one, whose public half stays published for a token lifetime plus a
margin, so tokens in flight keep verifying. Unsealed keys, immutable per kid, are cached; so is each algorithm's
current key once read back from the database (no lookup per token), which `rotate` forgets. Rotation is in process
only (no command or endpoint rotates a running server's keys), so no other instance has to hear of it.

Claims: `iss`, a pairwise `sub` (one per user and audience, so two audiences cannot correlate users), `aud`,
`scope`, `act` (RFC 8693 §4.1: the client acting for the user), `delegation_id`, `jti`, `iat`, `nbf`, `exp`.
Minting is deterministic for a delegation and a key with Ed25519, EdDSA and RS256 (the claims come from the
record); ES256 signatures are randomised, so each minting of the same claims differs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import seal, unseal
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import SigningKey
from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository

log = logging.getLogger("vouchsim.delegation")

Algorithm = Literal["Ed25519", "EdDSA", "ES256", "RS256"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
ALGORITHM: Algorithm = "Ed25519"  # the default
SigningJwk = OKPKey | ECKey | RSAKey
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


def kid_of(key: SigningJwk) -> str:
    kid = key.kid
    assert kid is not None  # every key made here carries its thumbprint as kid
    return kid


@contextmanager
def _eddsa_allowed() -> Iterator[None]:
    """joserfc warns on every use of `EdDSA` (RFC 9864 deprecates the name); an audience that asked for it, for
    a verifier that knows no other name for Ed25519, gets it without the noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning)
        yield


def mint(key: SigningJwk, claims: dict[str, Any], algorithm: Algorithm = ALGORITHM) -> str:
    signer = _ed25519_signer(key) if algorithm in _EDDSA else None
    if signer is not None:
        # What joserfc's `jwt.encode` writes, byte for byte (the tests compare): its registry look-ups, header
        # checks and key checks (ABC isinstance calls) cost more than the Ed25519 signature; the header, one per
        # key and algorithm, is encoded once.
        payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode()
        signing_input = _header_segment(kid_of(key), algorithm) + b"." + _b64(payload)
        return (signing_input + b"." + _b64(signer.sign(signing_input))).decode()
    header = {"alg": algorithm, "kid": kid_of(key), "typ": "JWT"}
    with _eddsa_allowed():
        return jwt.encode(header, claims, key, algorithms=[algorithm])


_EDDSA = ("Ed25519", "EdDSA")


def _ed25519_signer(key: SigningJwk) -> Ed25519PrivateKey | None:
    """The key's Ed25519 private half, if it is one (anything else goes through joserfc, which refuses it)."""
    if not isinstance(key, OKPKey) or not key.is_private:
        return None
    private = key.private_key
    return private if isinstance(private, Ed25519PrivateKey) else None


@lru_cache(maxsize=64)
def _header_segment(kid: str, algorithm: str) -> bytes:
    # joserfc puts its default `typ` first, then the header as given; ASCII-only JSON, no spaces.
    header = {"typ": "JWT", "alg": algorithm, "kid": kid}
    return _b64(json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode())


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def verified_claims(token: str, keys: KeySet) -> dict[str, Any] | None:
    """The claims of a JWT signed by one of `keys` with the algorithm that key is published for; None for
    anything else. Times are not checked."""
    try:
        with _eddsa_allowed():
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    kid = decoded.header.get("kid")
    if not isinstance(kid, str):
        return None
    key = next((key for key in keys if key.kid == kid), None)
    # One key, one algorithm: a token may not borrow an Ed25519 key under the EdDSA name or the other way round.
    if key is None or key.get("alg") != decoded.header.get("alg"):
        return None
    return dict(decoded.claims)


def _generate(algorithm: Algorithm) -> SigningJwk:
    """A new key whose `kid` is its RFC 7638 thumbprint. Used as generated: importing an RSA key again (to add the
    kid) re-validates it, 55 ms of CPU, as long as generating it."""
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", auto_kid=True)
    if algorithm == "RS256":
        return RSAKey.generate_key(2048, auto_kid=True)
    return OKPKey.generate_key("Ed25519", auto_kid=True)


def _import(data: dict[str, Any]) -> SigningJwk:
    kind = data.get("kty")
    if kind == "EC":
        return ECKey.import_key(data)
    if kind == "RSA":
        return RSAKey.import_key(data)
    return OKPKey.import_key(data)


class SigningKeyStore:
    """The signing keys, over whichever repository the caller's unit of work provides."""

    def __init__(self, hmac_key: bytes, clock: Clock, settings: Settings) -> None:
        self._secret = hmac_key.hex()
        self.clock = clock
        self.settings = settings
        self._unsealed: dict[str, SigningJwk] = {}
        # The current key of each algorithm once read back from the database (so committed): no lookup per token.
        # Keys change only through this store (`rotate`, or a key that no longer unseals), which forgets it.
        self._current: dict[str, SigningJwk] = {}
        # Held while the keys missing from the JWKS are made, so two first JWKS requests do not make two each.
        self.making = asyncio.Lock()

    async def prepare(self, keys: SigningKeyRepository, algorithms: Iterable[Algorithm] = ALGORITHMS) -> None:
        """A current key for each of `algorithms` (every one by default)."""
        for algorithm in algorithms:
            await self.signing_key(keys, algorithm)

    def complete(self) -> bool:
        """Whether the current key of every algorithm has been read back (so the JWKS carries one for each)."""
        return len(self._current) == len(ALGORITHMS)

    def current_key(self, algorithm: Algorithm = ALGORITHM) -> SigningJwk | None:
        """The current key for `algorithm` once `signing_key` has read it back; None before (ask `signing_key`)."""
        return self._current.get(algorithm)

    async def signing_key(self, keys: SigningKeyRepository, algorithm: Algorithm = ALGORITHM) -> SigningJwk:
        """The current key for `algorithm`; made on first use, and replaced if it can no longer be unsealed."""
        cached = self._current.get(algorithm)
        if cached is not None:
            return cached
        row = await keys.current(algorithm)
        if row is None:
            return await self._create(keys, algorithm)  # not cached: its transaction may still roll back
        key = self._open(row)
        if key is not None:
            self._current[algorithm] = key
            return key
        log.warning("signing key %s cannot be unsealed (was the secret key changed?): rotating", row.kid)
        return await self._replace(keys, row, algorithm)

    async def rotate(self, keys: SigningKeyRepository, algorithm: Algorithm = ALGORITHM) -> str:
        """A new current key for `algorithm`; the old one stays published until every token it signed has
        expired."""
        self._current.pop(algorithm, None)
        row = await keys.current(algorithm)
        key = await self._create(keys, algorithm) if row is None else await self._replace(keys, row, algorithm)
        return kid_of(key)

    async def jwks(self, keys: SigningKeyRepository) -> dict[str, Any]:
        rows = await keys.published(self.clock.now())
        return {"keys": [dict(row.public_jwk) for row in rows]}

    async def key_set(self, keys: SigningKeyRepository) -> KeySet:
        rows = await keys.published(self.clock.now())
        return KeySet([_import(dict(row.public_jwk)) for row in rows])

    async def _replace(self, keys: SigningKeyRepository, old: SigningKey, algorithm: Algorithm) -> SigningJwk:
        self._current.pop(algorithm, None)
        now = self.clock.now()
        publish_until = now + timedelta(seconds=self.settings.delegation_token_ttl) + RETIREMENT_MARGIN
        # Retired before its successor is stored: the database admits one current key per algorithm. If another
        # instance retired it first, it stored a successor too, which `_create` then returns.
        await keys.retire(old.kid, now, publish_until)
        return await self._create(keys, algorithm)

    async def _create(self, keys: SigningKeyRepository, algorithm: Algorithm) -> SigningJwk:
        key = _generate(algorithm)
        kid = kid_of(key)
        private = key.as_dict(private=True)
        public = {**key.as_dict(private=False), "alg": algorithm, "use": "sig"}
        sealed = seal(self._secret, SEAL_PURPOSE, json.dumps(private).encode())
        row = SigningKey(
            kid=kid, algorithm=algorithm, public_jwk=public, private_sealed=sealed, created_at=self.clock.now()
        )
        if await keys.add_current(row):
            self._unsealed[kid] = key
            return key
        # Another instance stored the current key meanwhile (starting at the same time as this one, say), and the
        # index waited for its commit: read back as any current key is (one that cannot be unsealed is replaced).
        return await self.signing_key(keys, algorithm)

    def _open(self, row: SigningKey) -> SigningJwk | None:
        cached = self._unsealed.get(row.kid)
        if cached is not None:
            return cached
        plain = unseal(self._secret, SEAL_PURPOSE, row.private_sealed)
        if plain is None:
            return None
        key = _import(json.loads(plain))
        self._unsealed[row.kid] = key
        return key
