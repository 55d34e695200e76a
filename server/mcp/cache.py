"""What `/mcp` validated, remembered in-process for a short while: bearer token → grant, session id → session.

A database round trip costs about ten times what the framework spends on a request (NOTES-dependencies.md), so
the hot path asks the database only on a miss. Entries live at most `ttl` seconds (30 by default) and never past
the token's or the session's own expiry. Revocation empties them at once: repositories announce
`revoked:token:<id>`, `revoked:connection:<id>` and `revoked:session:<id>` on the event bus when their transaction
commits (on PostgreSQL through LISTEN/NOTIFY, so every instance hears it), and `*` when the bus may have missed
something (its listener reconnected).

A lookup that started before a revocation must not put its stale answer back afterwards: callers read
`generation` before going to the database and hand it to `put_*`, which refuses to store once anything was
invalidated in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from vouchsim.server.core.clock import Clock
from vouchsim.server.mcp.sessions import SessionView
from vouchsim.server.oauth.bearer import AccessGrant
from vouchsim.server.storage import topics

T = TypeVar("T")

DEFAULT_TTL = 30.0
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    until: datetime


class McpCache:
    def __init__(self, clock: Clock, *, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.clock = clock
        self.ttl = timedelta(seconds=ttl)
        self.max_entries = max_entries
        self._grants: dict[str, _Entry[AccessGrant]] = {}
        self._sessions: dict[str, _Entry[SessionView]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    # -- bearer tokens (keyed by the token's SHA-256) ------------------------------------------------------------
    def grant(self, token_hash: str) -> AccessGrant | None:
        return self._get(self._grants, token_hash)

    def put_grant(self, token_hash: str, grant: AccessGrant, generation: int) -> None:
        self._put(self._grants, token_hash, grant, grant.expires_at, generation)

    # -- sessions (keyed by the stored session id) ----------------------------------------------------------------
    def session(self, key: str) -> SessionView | None:
        return self._get(self._sessions, key)

    def put_session(self, session: SessionView, generation: int) -> None:
        self._put(self._sessions, session.id, session, session.expires_at, generation)

    def forget_session(self, key: str) -> None:
        self._sessions.pop(key, None)

    # -- invalidation -------------------------------------------------------------------------------------------
    def invalidate(self, topic: str) -> None:
        """An event bus listener: drop whatever `topic` revokes; other topics are not ours."""
        if topic == topics.EVERYTHING:
            self._generation += 1
            self._grants.clear()
            self._sessions.clear()
            return
        revoked = topics.revoked(topic)
        if revoked is None:
            return
        kind, ident = revoked
        self._generation += 1
        if kind == "token":
            self._drop(self._grants, lambda grant: grant.token_id == ident)
        elif kind == "connection":
            self._drop(self._grants, lambda grant: grant.connection_id == ident)
            self._drop(self._sessions, lambda session: session.connection_id == ident)
        else:
            self._sessions.pop(ident, None)

    def __len__(self) -> int:
        return len(self._grants) + len(self._sessions)

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _get(self, entries: dict[str, _Entry[T]], key: str) -> T | None:
        entry = entries.get(key)
        if entry is None:
            return None
        if entry.until <= self.clock.now():
            entries.pop(key, None)
            return None
        return entry.value

    def _put(self, entries: dict[str, _Entry[T]], key: str, value: T, expires_at: datetime, generation: int) -> None:
        if generation != self._generation:
            return  # something was revoked while this value was being read: it may be stale already
        now = self.clock.now()
        until = min(now + self.ttl, expires_at)
        if until <= now:
            return
        if key not in entries and len(entries) >= self.max_entries:
            self._drop(entries, lambda _value: False, expired_before=now)
            while len(entries) >= self.max_entries:
                entries.pop(next(iter(entries)))  # the oldest insertion
        entries[key] = _Entry(value, until)

    @staticmethod
    def _drop(
        entries: dict[str, _Entry[T]], match: Callable[[T], bool], expired_before: datetime | None = None
    ) -> None:
        for key in [
            key
            for key, entry in entries.items()
            if match(entry.value) or (expired_before is not None and entry.until <= expired_before)
        ]:
            del entries[key]
