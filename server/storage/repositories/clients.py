"""Registered OAuth clients (RFC 7591)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import OAuthClient


class ClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, client: OAuthClient) -> None:
        self.session.add(client)
        await self.session.flush()

    async def get(self, client_id: str) -> OAuthClient | None:
        return await self.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
