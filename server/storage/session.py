"""The request's database session as a type, for layers that may not import SQLAlchemy themselves.

Routes annotate the `db` dependency with `DbSession`; the import-linter contract "Only the storage layer
speaks SQL" forbids them `sqlalchemy.ext.asyncio.AsyncSession` directly.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

DbSession = AsyncSession

__all__ = ["DbSession"]
