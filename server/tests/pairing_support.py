"""Helpers for the pairing and device tests: database fixtures, seeded rows, and a device that signs requests
per docs/device-api.md (written again here so the server's tests do not import the companion)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import b64url, new_id
from vouchsim.server.pairing.service import PairingService
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.models import (
    AuthorizationRequest,
    BrowserSession,
    Device,
    OAuthClient,
    OAuthToken,
    User,
)
from vouchsim.server.storage.repositories.pairings import PairingRepository

HMAC_KEY = b"k" * 32
ISSUER = "https://vouch.test"
BROWSER_SECRET = "browser-cookie-secret"


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def db(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session in one transaction, as a request has."""
    async with sessions() as session, session.begin():
        yield session


@pytest.fixture
def settings() -> Settings:
    return Settings()


def pairing_service(db: AsyncSession, clock: FrozenClock, settings: Settings) -> PairingService:
    return PairingService(PairingRepository(db), clock, settings, HMAC_KEY)


async def seed_client(db: AsyncSession, clock: FrozenClock, *, client_name: str | None = "Acme Agent Client") -> str:
    client_id = new_id("vsc")
    db.add(
        OAuthClient(
            client_id=client_id,
            client_name=client_name,
            redirect_uris=["http://127.0.0.1:33418/callback"],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope="identity delegation",
            client_metadata={},
            client_id_issued_at=0,
            created_at=clock.now(),
        )
    )
    await db.flush()
    return client_id


@dataclass(frozen=True)
class SeededRequest:
    request_id: str
    browser_session_id: str
    client_id: str


async def seed_request(
    db: AsyncSession,
    clock: FrozenClock,
    *,
    client_name: str | None = "Acme Agent Client",
    redirect_uri: str = "http://127.0.0.1:33418/callback",
    scope: str = "identity delegation",
) -> SeededRequest:
    """An authorization request made in a fresh browser session, as /oauth/authorize leaves one."""
    client_id = await seed_client(db, clock, client_name=client_name)
    browser = BrowserSession(
        id=new_id("brw"),
        secret_hash=secrets.token_hex(32),
        created_at=clock.now(),
        expires_at=clock.now() + timedelta(days=7),
    )
    db.add(browser)
    await db.flush()
    request = AuthorizationRequest(
        id=new_id("areq"),
        browser_session_id=browser.id,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state="s",
        code_challenge="c" * 43,
        code_challenge_method="S256",
        resource=f"{ISSUER}/mcp",
        created_at=clock.now(),
        expires_at=clock.now() + timedelta(minutes=10),
    )
    db.add(request)
    await db.flush()
    return SeededRequest(request.id, browser.id, client_id)


@dataclass(frozen=True)
class SeededDevice:
    user_id: str
    device_id: str


async def seed_device(db: AsyncSession, clock: FrozenClock, name: str = "Pixel of QA") -> SeededDevice:
    user_id, device_id = new_id("usr"), new_id("dev")
    db.add(User(id=user_id, created_at=clock.now()))
    await db.flush()
    db.add(
        Device(
            id=device_id,
            user_id=user_id,
            public_key=b64url(secrets.token_bytes(32)),
            name=name,
            created_at=clock.now(),
        )
    )
    await db.flush()
    return SeededDevice(user_id, device_id)


async def seed_token(db: AsyncSession, clock: FrozenClock, *, connection_id: str, user_id: str, client_id: str) -> str:
    token_id = new_id("tok")
    db.add(
        OAuthToken(
            id=token_id,
            grant_id=new_id("grant"),
            client_id=client_id,
            user_id=user_id,
            connection_id=connection_id,
            scope="identity",
            resource=f"{ISSUER}/mcp",
            access_token_hash=secrets.token_hex(32),
            refresh_token_hash=secrets.token_hex(32),
            created_at=clock.now(),
            access_expires_at=clock.now() + timedelta(hours=1),
            refresh_expires_at=clock.now() + timedelta(days=30),
        )
    )
    await db.flush()
    return token_id


@dataclass
class SigningDevice:
    """A device key that signs `/device/…` requests the way the companion does."""

    clock: FrozenClock
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    device_id: str = "new"

    @property
    def public_key(self) -> str:
        return b64url(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def headers(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(self.clock.now().timestamp()))
        nonce = nonce or b64url(secrets.token_bytes(16))
        canonical = "\n".join(
            ["vouchsim-device-v1", method.upper(), target, stamp, nonce, hashlib.sha256(body).hexdigest()]
        )
        return {
            "Vouch-Device-Id": self.device_id,
            "Vouch-Timestamp": stamp,
            "Vouch-Nonce": nonce,
            "Vouch-Signature": b64url(self.key.sign(canonical.encode())),
        }


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def at(clock: FrozenClock, seconds: float) -> datetime:
    return clock.now() + timedelta(seconds=seconds)
