"""Authorization codes and access/refresh tokens: looked up by hash, changed by compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage import topics
from vouchsim.server.storage.events import announce
from vouchsim.server.storage.models import AuthorizationCode, OAuthClient, OAuthToken, RuntimeConnection

_ANNOUNCE_EACH = 16
# The token endpoint's reads, built once with their values bound at execution: building them cost more than
# running them (py-spy, the whole flow in process).
_CODE_BY_HASH = select(AuthorizationCode).where(AuthorizationCode.code_hash == bindparam("code_hash"))
_BY_ACCESS_HASH = select(OAuthToken).where(OAuthToken.access_token_hash == bindparam("access_hash"))
_BY_REFRESH_HASH = select(OAuthToken).where(OAuthToken.refresh_token_hash == bindparam("refresh_hash"))
_CONNECTION_ACTIVE = select(RuntimeConnection.id).where(
    RuntimeConnection.id == bindparam("connection_id"), RuntimeConnection.revoked_at.is_(None)
)


@dataclass(frozen=True, slots=True)
class ActiveAccess:
    """What a live access token stands for, with its client's display name: what `/mcp` keeps in its cache."""

    token_id: str
    client_id: str
    client_name: str | None
    user_id: str
    connection_id: str
    scope: str
    resource: str
    access_expires_at: datetime


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- authorization codes ------------------------------------------------------------------------------
    async def add_code(self, code: AuthorizationCode) -> None:
        self.session.add(code)
        await self.session.flush()

    async def code_by_hash(self, code_hash: str) -> AuthorizationCode | None:
        return await self.session.scalar(_CODE_BY_HASH, {"code_hash": code_hash})

    async def use_code(self, code_id: str, now: datetime) -> bool:
        """Compare-and-swap: True only for the one exchange that consumes the code."""
        result = await self.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == code_id, AuthorizationCode.used_at.is_(None))
            .values(used_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_issued_from_code(self, code_id: str, now: datetime) -> int:
        """RFC 6749 §4.1.2: a replayed code revokes every token issued from it, refreshed ones included."""
        grant_ids = select(OAuthToken.grant_id).where(OAuthToken.authorization_code_id == code_id)
        return await self._revoke(OAuthToken.grant_id.in_(grant_ids), now)

    # -- tokens -------------------------------------------------------------------------------------------
    async def add_token(self, token: OAuthToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def get(self, token_id: str) -> OAuthToken | None:
        return await self.session.get(OAuthToken, token_id, populate_existing=True)

    async def by_access_hash(self, access_hash: str) -> OAuthToken | None:
        return await self.session.scalar(_BY_ACCESS_HASH, {"access_hash": access_hash})

    async def by_refresh_hash(self, refresh_hash: str) -> OAuthToken | None:
        return await self.session.scalar(_BY_REFRESH_HASH, {"refresh_hash": refresh_hash})

    async def active_access(self, access_hash: str, now: datetime) -> ActiveAccess | None:
        """The token behind a bearer credential, if it and its runtime connection are both still live: one Core
        statement (columns, no ORM identity map), the client's name joined in so no tool reads the client again."""
        row = (
            await self.session.execute(
                select(
                    OAuthToken.id,
                    OAuthToken.client_id,
                    OAuthClient.client_name,
                    OAuthToken.user_id,
                    OAuthToken.connection_id,
                    OAuthToken.scope,
                    OAuthToken.resource,
                    OAuthToken.access_expires_at,
                )
                .join(RuntimeConnection, RuntimeConnection.id == OAuthToken.connection_id)
                .outerjoin(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
                .where(
                    OAuthToken.access_token_hash == access_hash,
                    OAuthToken.revoked_at.is_(None),
                    OAuthToken.access_expires_at > now,
                    RuntimeConnection.revoked_at.is_(None),
                )
            )
        ).first()
        return ActiveAccess(*row) if row else None

    async def connection_active(self, connection_id: str) -> bool:
        return await self.session.scalar(_CONNECTION_ACTIVE, {"connection_id": connection_id}) is not None

    async def start_rotation(self, token_id: str, now: datetime) -> bool:
        """Compare-and-swap: True only for the one refresh that rotates this token."""
        result = await self.session.execute(
            update(OAuthToken)
            .where(OAuthToken.id == token_id, OAuthToken.rotated_at.is_(None), OAuthToken.revoked_at.is_(None))
            .values(rotated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def record_successor(self, token_id: str, successor_id: str, sealed: str) -> None:
        await self.session.execute(
            update(OAuthToken)
            .where(OAuthToken.id == token_id)
            .values(replaced_by_id=successor_id, successor_sealed=sealed)
        )

    async def revoke_token(self, token_id: str, now: datetime) -> int:
        return await self._revoke(OAuthToken.id == token_id, now)

    async def revoke_grant(self, grant_id: str, now: datetime) -> int:
        return await self._revoke(OAuthToken.grant_id == grant_id, now)

    async def _revoke(self, condition: object, now: datetime) -> int:
        result = await self.session.execute(
            update(OAuthToken)
            .where(condition, OAuthToken.revoked_at.is_(None))  # type: ignore[arg-type]
            .values(revoked_at=now, successor_sealed=None)
            .returning(OAuthToken.id, OAuthToken.connection_id)
            .execution_options(synchronize_session=False)
        )
        revoked = [(token_id, connection_id) for token_id, connection_id in result]
        # Caches of validated tokens drop them at commit. A long rotation family is announced by its connection
        # instead, one notification rather than one per token (dropping a little more costs a re-read, no more).
        if len(revoked) <= _ANNOUNCE_EACH:
            await announce(self.session, *(topics.revoked_token(token_id) for token_id, _ in revoked))
        else:
            await announce(self.session, *sorted({topics.revoked_connection(conn) for _, conn in revoked}))
        return len(revoked)
