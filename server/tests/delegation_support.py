"""Helpers for the delegation tests: the signed decision statement written again from docs/delegations.md (so
the tests check the server against the contract, not against itself), and a seeded user with a trusted device,
a registered client and a runtime connection."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncSession

from server.tests.pairing_support import seed_client
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import b64url, new_id
from vouchsim.server.delegation.schemas import DelegationView
from vouchsim.server.delegation.service import Admitted, DelegationService
from vouchsim.server.storage.models import Device, RuntimeConnection, User
from vouchsim.server.storage.repositories.devices import DeviceSigner

HMAC_KEY = b"d" * 32
ISSUER = "https://vouch.test"
PURPOSE = "Identify the user before preparing a payment approval."


def wire(view: Any) -> dict[str, Any]:
    """A delegation object as the API prints it."""
    return json.loads(msgspec.json.encode(view))  # type: ignore[no-any-return]


def statement(delegation: dict[str, Any], decision: str, nonce: str) -> bytes:
    """docs/delegations.md, "The signed decision statement", from the object as the server sent it."""
    content = {
        "audience_id": delegation["audience_id"],
        "binding_message": delegation["binding_message"],
        "decision": decision,
        "delegation_id": delegation["delegation_id"],
        "expires_at": delegation["expires_at"],
        "nonce": nonce,
        "purpose": delegation["purpose"],
        "scopes": delegation["scopes"],
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"vouchsim-delegation-decision-v1\n{canonical}".encode()


def new_nonce() -> str:
    return b64url(secrets.token_bytes(16))


@dataclass(frozen=True)
class SignedDecision:
    decision: str
    nonce: str
    signature: str

    def body(self) -> dict[str, str]:
        return {"decision": self.decision, "nonce": self.nonce, "signature": self.signature}


def sign(
    key: Ed25519PrivateKey, delegation: dict[str, Any], decision: str = "approve", nonce: str | None = None
) -> SignedDecision:
    nonce = nonce or new_nonce()
    return SignedDecision(decision, nonce, b64url(key.sign(statement(delegation, decision, nonce))))


@dataclass(frozen=True)
class Phone:
    """A user and one of their trusted devices, holding its private key."""

    user_id: str
    device_id: str
    key: Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True)
class Runtime:
    """A client paired with a user: what an MCP call acts as."""

    user_id: str
    client_id: str
    connection_id: str


async def seed_phone(db: AsyncSession, clock: FrozenClock, *, user_id: str | None = None) -> Phone:
    key = Ed25519PrivateKey.generate()
    if user_id is None:
        user_id = new_id("usr")
        db.add(User(id=user_id, created_at=clock.now()))
        await db.flush()
    device_id = new_id("dev")
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    db.add(Device(id=device_id, user_id=user_id, public_key=b64url(raw), name="phone", created_at=clock.now()))
    await db.flush()
    return Phone(user_id, device_id, key)


async def seed_runtime(db: AsyncSession, clock: FrozenClock, phone: Phone, client_name: str = "Acme Agent") -> Runtime:
    client_id = await seed_client(db, clock, client_name=client_name)
    connection = RuntimeConnection(
        id=new_id("conn"),
        user_id=phone.user_id,
        client_id=client_id,
        device_id=phone.device_id,
        scope="identity delegation",
        created_at=clock.now(),
    )
    db.add(connection)
    await db.flush()
    return Runtime(phone.user_id, client_id, connection.id)


@dataclass(frozen=True)
class World:
    phone: Phone
    runtime: Runtime
    # Another user, with their own device and runtime: none of their business.
    stranger: Phone
    strangers_runtime: Runtime


async def ask(
    service: DelegationService,
    runtime: Runtime,
    *,
    audience_id: str = "aud_test_payments",
    scopes: list[str] | None = None,
    purpose: str = PURPOSE,
) -> DelegationView:
    return await service.request(
        user_id=runtime.user_id,
        client_id=runtime.client_id,
        connection_id=runtime.connection_id,
        audience_id=audience_id,
        purpose=purpose,
        scopes=scopes if scopes is not None else ["payments.identity", "payments.prepare"],
    )


async def decide(
    service: DelegationService, phone: Phone, view: DelegationView, decision: str = "approve", **overrides: Any
) -> DelegationView:
    signed = sign(phone.key, wire(view), decision)
    values = {"decision": signed.decision, "nonce": signed.nonce, "signature": signed.signature, **overrides}
    return await decide_as(service, phone.device_id, phone.user_id, view.delegation_id, **values)


async def decide_as(
    service: DelegationService, device_id: str, user_id: str, delegation_id: str, **values: str
) -> DelegationView:
    """A decision by device `device_id` of `user_id`, its request's signature taken as checked (the routes check it
    through `decide_signed`'s `admit`)."""

    async def authenticated(_: DeviceSigner | None, __: bool | None) -> Admitted:
        return Admitted(user_id)

    return await service.decide_signed(device_id=device_id, delegation_id=delegation_id, admit=authenticated, **values)
