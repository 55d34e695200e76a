"""The testbed's records (server/testbed/): its shared state (the clock offset), injected faults, the reset that
wipes everything but keys, and the few look-ups the request journal makes to name a request's client.

Firing a fault is a compare-and-swap on `remaining`, so a fault armed for `times: N` fires exactly N times
however many instances serve the requests it matches.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import (
    AuthorizationCode,
    AuthorizationRequest,
    BrowserSession,
    Delegation,
    Device,
    DeviceNonce,
    McpSession,
    McpTask,
    OAuthClient,
    OAuthToken,
    PairingSession,
    RuntimeConnection,
    TestbedFault,
    TestbedState,
    User,
)

CLOCK = "clock"

# Tables a reset leaves alone; every other table is wiped (a test checks that each table is one or the other).
# (`testbed_state` holds the clock offset, which a reset sets back to zero rather than deleting its row.)
KEPT = ("server_keys", "signing_keys", "testbed_state", "alembic_version")
# Children before parents (foreign keys). Signing keys and the server's HMAC key are kept: audiences may have
# cached the JWKS, and CSRF tokens and pairwise subjects stay stable across resets.
_WIPED = (
    McpTask,
    Delegation,
    McpSession,
    OAuthToken,
    AuthorizationCode,
    PairingSession,
    AuthorizationRequest,
    BrowserSession,
    RuntimeConnection,
    DeviceNonce,
    Device,
    User,
    OAuthClient,
    TestbedFault,
)


class TestbedRepository:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- shared state -------------------------------------------------------------------------------------------
    async def state(self, name: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """`for_update`: locked until the transaction ends (PostgreSQL), for a read-modify-write."""
        row = await self.session.get(TestbedState, name, with_for_update=for_update, populate_existing=True)
        return dict(row.value) if row is not None else None

    async def set_state(self, name: str, value: dict[str, Any], now: datetime) -> None:
        row = await self.session.get(TestbedState, name)
        if row is None:
            self.session.add(TestbedState(name=name, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now
        await self.session.flush()

    # -- faults -------------------------------------------------------------------------------------------------
    async def faults(self) -> list[TestbedFault]:
        """Every fault, oldest first (the order they are tried in)."""
        rows = await self.session.scalars(select(TestbedFault).order_by(TestbedFault.created_at, TestbedFault.id))
        return list(rows)

    async def add_fault(self, row: TestbedFault) -> None:
        self.session.add(row)
        await self.session.flush()

    async def remove_fault(self, fault_id: str) -> bool:
        result = await self.session.execute(delete(TestbedFault).where(TestbedFault.id == fault_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def fire(self, fault_id: str) -> tuple[int | None] | None:
        """Use one firing of the fault: `(remaining after it,)` when it fired, None when it was used up or
        removed meanwhile (another instance may have won the last one)."""
        result = await self.session.execute(
            update(TestbedFault)
            .where(
                TestbedFault.id == fault_id,
                (TestbedFault.remaining.is_(None)) | (TestbedFault.remaining > 0),
            )
            .values(
                remaining=case((TestbedFault.remaining.is_(None), None), else_=TestbedFault.remaining - 1),
                fired=TestbedFault.fired + 1,
            )
            .returning(TestbedFault.remaining)
            .execution_options(synchronize_session=False)
        )
        row = result.first()
        return None if row is None else (row[0],)

    # -- reset --------------------------------------------------------------------------------------------------
    async def wipe(self) -> None:
        """Every client, user, device, connection, token, session, delegation and fault; keys stay."""
        for model in _WIPED:
            await self.session.execute(delete(model))

    # -- naming a request's client (the journal) -----------------------------------------------------------------
    async def client_of_access_token(self, access_token_hash: str) -> str | None:
        """Whoever the token was issued to, expired or revoked ones included."""
        return await self.session.scalar(
            select(OAuthToken.client_id).where(OAuthToken.access_token_hash == access_token_hash)
        )

    async def client_of_pairing(self, pairing_id: str) -> str | None:
        return await self.session.scalar(
            select(AuthorizationRequest.client_id)
            .join(PairingSession, PairingSession.authorization_request_id == AuthorizationRequest.id)
            .where(PairingSession.id == pairing_id)
        )

    async def client_of_authorization_request(self, request_id: str) -> str | None:
        return await self.session.scalar(
            select(AuthorizationRequest.client_id).where(AuthorizationRequest.id == request_id)
        )

    async def client_exists(self, client_id: str) -> bool:
        return (await self.session.get(OAuthClient, client_id)) is not None
