"""Streamable HTTP sessions (basic/transports, "Session Management"), kept in the database so any instance
serves any session.

`initialize` opens one and returns its id in `Mcp-Session-Id`: 256 random bits, URL-safe, so visible ASCII as
the spec demands. Only its SHA-256 is stored (like every other credential here), and a session is bound to the
user, client and runtime connection of the token that opened it. A session ends on `DELETE /mcp` or after
`mcp_session_ttl` seconds without a request; use slides the expiry, written at most once a minute so the hot
path does not write on every request.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import msgspec

from vouchsim.server.core.clock import Clock, as_utc
from vouchsim.server.core.crypto import hash_secret, random_token
from vouchsim.server.mcp.errors import SessionNotFound
from vouchsim.server.oauth.bearer import AccessGrant
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import McpSession
from vouchsim.server.storage.repositories.mcp_sessions import McpSessionRepository

MAX_SESSION_ID_LENGTH = 128
_TOUCH_EVERY = timedelta(seconds=60)


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    """A live session as the transport needs it (`id` is the stored digest, never the header value)."""

    id: str
    user_id: str
    client_id: str
    connection_id: str
    protocol_version: str
    last_seen_at: datetime
    expires_at: datetime


def session_key(header_value: str) -> str | None:
    """The stored id for an `Mcp-Session-Id` header; None for a value we could never have issued."""
    value = header_value.strip()
    # Visible ASCII (0x21-0x7E) only: printable ASCII is 0x20-0x7E, and the space is not ours.
    if not value or len(value) > MAX_SESSION_ID_LENGTH or not (value.isascii() and value.isprintable()) or " " in value:
        return None
    return hash_secret(value)


def check_binding(session: SessionView, grant: AccessGrant) -> None:
    """A session serves only the user and client that opened it, through the same runtime connection."""
    if session.user_id != grant.user_id or session.client_id != grant.client_id:
        raise SessionNotFound()  # someone else's session: as good as absent
    if session.connection_id != grant.connection_id:
        # Same user and client, paired again since: the old session cannot be served to the new connection.
        raise SessionNotFound(
            "This session belongs to an earlier pairing of this client; initialize a new one.", reason="unavailable"
        )


def needs_touch(session: SessionView, now: datetime, ttl_seconds: int) -> bool:
    """Whether to write the session's new idle expiry now: once a minute at most (half the TTL if shorter)."""
    return now - session.last_seen_at >= _touch_interval(ttl_seconds)


@functools.lru_cache(maxsize=8)  # one TTL per process: asked on every legacy request
def _touch_interval(ttl_seconds: int) -> timedelta:
    return min(_TOUCH_EVERY, timedelta(seconds=ttl_seconds) / 2)


def _view(row: McpSession) -> SessionView:
    return SessionView(
        id=row.id,
        user_id=row.user_id,
        client_id=row.client_id,
        connection_id=row.connection_id,
        protocol_version=row.protocol_version,
        last_seen_at=as_utc(row.last_seen_at),
        expires_at=as_utc(row.expires_at),
    )


class McpSessions:
    def __init__(self, sessions: McpSessionRepository, clock: Clock, settings: Settings) -> None:
        self.sessions = sessions
        self.clock = clock
        self.ttl = timedelta(seconds=settings.mcp_session_ttl)

    async def open(
        self, grant: AccessGrant, protocol_version: str, client_info: dict[str, object]
    ) -> tuple[str, SessionView]:
        """A new session: its `Mcp-Session-Id` (shown once) and what is stored of it."""
        now = self.clock.now()
        await self.sessions.purge(grant.connection_id, now)
        header_value = random_token(32)
        row = McpSession(
            id=hash_secret(header_value),
            user_id=grant.user_id,
            client_id=grant.client_id,
            connection_id=grant.connection_id,
            protocol_version=protocol_version,
            client_info=dict(client_info),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.ttl,
        )
        await self.sessions.add(row)
        return header_value, _view(row)

    async def find(self, key: str) -> SessionView | None:
        """The live session stored under `key`; None when it never existed, ended or went idle."""
        row = await self.sessions.get(key)
        if row is None or row.deleted_at is not None or as_utc(row.expires_at) <= self.clock.now():
            return None
        return _view(row)

    async def touch(self, session: SessionView) -> SessionView | None:
        """Slide the idle expiry; None when the session ended meanwhile (on another instance, say)."""
        now = self.clock.now()
        expires_at = now + self.ttl
        if not await self.sessions.touch(session.id, now, expires_at):
            return None
        return msgspec.structs.replace(session, last_seen_at=now, expires_at=expires_at)

    async def end(self, key: str) -> None:
        await self.sessions.delete(key, self.clock.now())
