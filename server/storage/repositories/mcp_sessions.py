"""MCP sessions (`Mcp-Session-Id`): opened by `initialize`, kept alive by use, ended by DELETE or idleness."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage import topics
from vouchsim.server.storage.events import announce
from vouchsim.server.storage.models import McpSession


class McpSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: McpSession) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, session_id: str) -> McpSession | None:
        return await self.session.get(McpSession, session_id, populate_existing=True)

    async def touch(self, session_id: str, now: datetime, expires_at: datetime) -> bool:
        """Slide the idle expiry of a live session; False when it was deleted or had expired meanwhile."""
        result = await self.session.execute(
            update(McpSession)
            .where(McpSession.id == session_id, McpSession.deleted_at.is_(None), McpSession.expires_at > now)
            .values(last_seen_at=now, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, session_id: str, now: datetime) -> bool:
        """End a session (kept as a tombstone until purged); idempotent, True only when this call ended it."""
        result = await self.session.execute(
            update(McpSession)
            .where(McpSession.id == session_id, McpSession.deleted_at.is_(None))
            .values(deleted_at=now)
            .execution_options(synchronize_session=False)
        )
        # Every instance's cache of this session drops it at commit.
        await announce(self.session, topics.revoked_session(session_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def purge(self, connection_id: str, now: datetime) -> int:
        """Remove the connection's sessions that ended or went idle (called when it opens a new one)."""
        result = await self.session.execute(
            delete(McpSession)
            .where(
                McpSession.connection_id == connection_id,
                or_(McpSession.deleted_at.is_not(None), McpSession.expires_at <= now),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
