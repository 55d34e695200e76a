"""What the authorization page holds: browser sessions and the authorization requests made in them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import AuthorizationRequest, BrowserSession, OAuthClient

# The page's reads, built once with their values bound at execution (every step of the page makes them).
_BROWSER_BY_SECRET_HASH = select(BrowserSession).where(
    BrowserSession.secret_hash == bindparam("secret_hash"),
    BrowserSession.expires_at > bindparam("now", type_=BrowserSession.__table__.c.expires_at.type),
)
_REQUEST_WITH_CLIENT = (
    select(AuthorizationRequest, OAuthClient)
    .join(OAuthClient, OAuthClient.client_id == AuthorizationRequest.client_id)
    .where(
        AuthorizationRequest.id == bindparam("request_id"),
        AuthorizationRequest.browser_session_id == bindparam("browser_id"),
    )
)


class AuthorizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_browser(self, browser: BrowserSession) -> None:
        self.session.add(browser)
        await self.session.flush()

    async def browser_by_secret_hash(self, secret_hash: str, now: datetime) -> BrowserSession | None:
        return await self.session.scalar(_BROWSER_BY_SECRET_HASH, {"secret_hash": secret_hash, "now": now})

    async def sign_in_browser(self, browser_id: str, user_id: str, device_id: str, now: datetime) -> None:
        await self.session.execute(
            update(BrowserSession)
            .where(BrowserSession.id == browser_id)
            .values(user_id=user_id, device_id=device_id, signed_in_at=now)
        )

    async def add_request(self, request: AuthorizationRequest) -> None:
        self.session.add(request)
        await self.session.flush()

    async def request_with_client(
        self, request_id: str, browser_id: str
    ) -> tuple[AuthorizationRequest, OAuthClient] | None:
        row = (
            await self.session.execute(_REQUEST_WITH_CLIENT, {"request_id": request_id, "browser_id": browser_id})
        ).first()
        return (row[0], row[1]) if row else None

    async def complete_request(self, request_id: str, now: datetime) -> bool:
        """Compare-and-swap: only the first completion of a request wins."""
        result = await self.session.execute(
            update(AuthorizationRequest)
            .where(AuthorizationRequest.id == request_id, AuthorizationRequest.completed_at.is_(None))
            .values(completed_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
