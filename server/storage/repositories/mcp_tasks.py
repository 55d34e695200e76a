"""MCP tasks (the Tasks extension): created with their delegation, finished once by compare-and-swap, forgotten
after `expires_at`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import McpTask


class McpTaskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: McpTask) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, task_id_hash: str) -> McpTask | None:
        return await self.session.get(McpTask, task_id_hash, populate_existing=True)

    async def finish(
        self, task_id_hash: str, *, status: str, result_sealed: str | None, now: datetime, expires_at: datetime
    ) -> bool:
        """Move a working task to its terminal `status`; False when another request finished it first."""
        result = await self.session.execute(
            update(McpTask)
            .where(McpTask.id == task_id_hash, McpTask.status == "working")
            .values(status=status, result_sealed=result_sealed, last_updated_at=now, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def purge(self, connection_id: str, now: datetime) -> int:
        """Forget the connection's tasks past their `expires_at` (called when it creates a new one)."""
        result = await self.session.execute(
            delete(McpTask)
            .where(McpTask.connection_id == connection_id, McpTask.expires_at <= now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
