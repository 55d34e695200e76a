"""Runtime connections: an OAuth client paired with a user through a trusted device, and their unpairing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.core.crypto import new_id
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import announce
from vouchsim.server.storage.models import OAuthClient, OAuthToken, RuntimeConnection

# Every authorization looks for the client's live connection: built once, the ids bound at execution.
_FIND_ACTIVE = (
    select(RuntimeConnection)
    .where(
        RuntimeConnection.user_id == bindparam("user_id"),
        RuntimeConnection.client_id == bindparam("client_id"),
        RuntimeConnection.revoked_at.is_(None),
    )
    .order_by(RuntimeConnection.created_at.desc(), RuntimeConnection.id.desc())
    .limit(1)
)


class ConnectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, user_id: str, client_id: str, device_id: str, scope: str, now: datetime
    ) -> RuntimeConnection:
        row = RuntimeConnection(
            id=new_id("conn"),
            user_id=user_id,
            client_id=client_id,
            device_id=device_id,
            scope=scope,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, connection_id: str) -> RuntimeConnection | None:
        return await self.session.get(RuntimeConnection, connection_id, populate_existing=True)

    async def find_active(self, user_id: str, client_id: str) -> RuntimeConnection | None:
        """The newest connection of this client to this user that was not revoked."""
        return await self.session.scalar(_FIND_ACTIVE, {"user_id": user_id, "client_id": client_id})

    async def live_of_device(self, device_id: str) -> list[str]:
        """The ids of the connections this device paired that are not revoked, oldest first."""
        found = await self.session.scalars(
            select(RuntimeConnection.id)
            .where(RuntimeConnection.device_id == device_id, RuntimeConnection.revoked_at.is_(None))
            .order_by(RuntimeConnection.created_at, RuntimeConnection.id)
        )
        return list(found)

    async def list_for_user(self, user_id: str) -> list[tuple[RuntimeConnection, str]]:
        """Every connection of the user, newest first, with the client's display name (its id if unnamed)."""
        rows = await self.session.execute(
            select(RuntimeConnection, func.coalesce(OAuthClient.client_name, OAuthClient.client_id))
            .join(OAuthClient, OAuthClient.client_id == RuntimeConnection.client_id)
            .where(RuntimeConnection.user_id == user_id)
            .order_by(RuntimeConnection.created_at.desc(), RuntimeConnection.id.desc())
        )
        return [(connection, name) for connection, name in rows]

    async def list_with_clients(self, user_id: str) -> list[tuple[RuntimeConnection, OAuthClient]]:
        """Every connection of the user, newest first, with its client."""
        rows = await self.session.execute(
            select(RuntimeConnection, OAuthClient)
            .join(OAuthClient, OAuthClient.client_id == RuntimeConnection.client_id)
            .where(RuntimeConnection.user_id == user_id)
            .order_by(RuntimeConnection.created_at.desc(), RuntimeConnection.id.desc())
        )
        return [(connection, client) for connection, client in rows]

    async def client_of(self, connection_id: str) -> OAuthClient | None:
        return await self.session.scalar(
            select(OAuthClient)
            .join(RuntimeConnection, RuntimeConnection.client_id == OAuthClient.client_id)
            .where(RuntimeConnection.id == connection_id)
        )

    async def client_name(self, connection_id: str) -> str | None:
        return await self.session.scalar(
            select(func.coalesce(OAuthClient.client_name, OAuthClient.client_id))
            .join(RuntimeConnection, RuntimeConnection.client_id == OAuthClient.client_id)
            .where(RuntimeConnection.id == connection_id)
        )

    async def revoke(self, connection_id: str, now: datetime) -> bool:
        """Unpair: the connection and every token issued through it stop working in this transaction.

        Idempotent: True only when this call revoked the connection; tokens are revoked either way, so a
        token minted by a racing exchange is swept up too.
        """
        result = await self.session.execute(
            update(RuntimeConnection)
            .where(RuntimeConnection.id == connection_id, RuntimeConnection.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(OAuthToken)
            .where(OAuthToken.connection_id == connection_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now, successor_sealed=None)
            .execution_options(synchronize_session=False)
        )
        # Caches of validated tokens and MCP sessions of this connection drop them at commit.
        await announce(self.session, topics.revoked_connection(connection_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def touch(self, connection_id: str, now: datetime) -> None:
        await self.session.execute(
            update(RuntimeConnection)
            .where(RuntimeConnection.id == connection_id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
