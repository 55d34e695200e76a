"""The in-process cache of validated tokens and sessions: short-lived, bounded, and emptied by revocations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.mcp.cache import McpCache
from vouchsim.server.mcp.sessions import SessionView
from vouchsim.server.oauth.bearer import AccessGrant


def grant(
    clock: FrozenClock,
    token_id: str = "tok_1",  # noqa: S107 - an id, not a secret
    connection_id: str = "conn_1",
    ttl: int = 3600,
) -> AccessGrant:
    return AccessGrant(
        token_id=token_id,
        client_id="vsc_1",
        user_id="usr_1",
        connection_id=connection_id,
        scopes=("identity", "delegation"),
        resource="https://vouch.test/mcp",
        expires_at=clock.now() + timedelta(seconds=ttl),
    )


def session(clock: FrozenClock, key: str = "s1", connection_id: str = "conn_1") -> SessionView:
    return SessionView(
        id=key,
        user_id="usr_1",
        client_id="vsc_1",
        connection_id=connection_id,
        protocol_version="2025-11-25",
        last_seen_at=clock.now(),
        expires_at=clock.now() + timedelta(hours=1),
    )


@pytest.fixture
def cache(clock: FrozenClock) -> McpCache:
    return McpCache(clock, ttl=30)


def test_entries_live_thirty_seconds(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_grant("h1", grant(clock), cache.generation)
    cache.put_session(session(clock), cache.generation)
    clock.advance(29)
    assert cache.grant("h1") is not None and cache.session("s1") is not None
    clock.advance(1)
    assert cache.grant("h1") is None and cache.session("s1") is None
    assert len(cache) == 0


def test_an_entry_never_outlives_its_token(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_grant("h1", grant(clock, ttl=5), cache.generation)
    clock.advance(5)
    assert cache.grant("h1") is None
    cache.put_grant("h2", grant(clock, ttl=0), cache.generation)  # expired already: not even stored
    assert len(cache) == 0


def test_a_revoked_token_is_dropped(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_grant("h1", grant(clock, "tok_1"), cache.generation)
    cache.put_grant("h2", grant(clock, "tok_2"), cache.generation)
    cache.invalidate("revoked:token:tok_1")
    assert cache.grant("h1") is None
    assert cache.grant("h2") is not None


def test_a_revoked_connection_drops_its_tokens_and_sessions(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_grant("h1", grant(clock, "tok_1", "conn_1"), cache.generation)
    cache.put_grant("h2", grant(clock, "tok_2", "conn_2"), cache.generation)
    cache.put_session(session(clock, "s1", "conn_1"), cache.generation)
    cache.put_session(session(clock, "s2", "conn_2"), cache.generation)
    cache.invalidate("revoked:connection:conn_1")
    assert cache.grant("h1") is None and cache.session("s1") is None
    assert cache.grant("h2") is not None and cache.session("s2") is not None


def test_an_ended_session_is_dropped(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_session(session(clock, "s1"), cache.generation)
    cache.put_session(session(clock, "s2"), cache.generation)
    cache.invalidate("revoked:session:s1")
    assert cache.session("s1") is None and cache.session("s2") is not None


def test_a_star_empties_everything(cache: McpCache, clock: FrozenClock) -> None:
    cache.put_grant("h1", grant(clock), cache.generation)
    cache.put_session(session(clock), cache.generation)
    cache.invalidate("*")
    assert len(cache) == 0


@pytest.mark.parametrize("topic", ["delegation:dlg_1", "user:usr_1", "revoked:token:", "mcp:cancel:s1:1", "tok_1"])
def test_other_topics_change_nothing(cache: McpCache, clock: FrozenClock, topic: str) -> None:
    cache.put_grant("h1", grant(clock), cache.generation)
    generation = cache.generation
    cache.invalidate(topic)
    assert cache.grant("h1") is not None and cache.generation == generation


def test_a_lookup_that_raced_a_revocation_is_not_stored(cache: McpCache, clock: FrozenClock) -> None:
    before = cache.generation  # a miss: the database is being asked...
    cache.invalidate("revoked:token:tok_1")  # ...while the token is revoked
    cache.put_grant("h1", grant(clock, "tok_1"), before)
    cache.put_session(session(clock), before)
    assert len(cache) == 0
    cache.put_grant("h1", grant(clock, "tok_1"), cache.generation)
    assert cache.grant("h1") is not None


def test_the_cache_is_bounded(clock: FrozenClock) -> None:
    cache = McpCache(clock, ttl=30, max_entries=3)
    for n in range(5):
        cache.put_grant(f"h{n}", grant(clock, f"tok_{n}"), cache.generation)
        clock.advance(1)
    assert len(cache) == 3
    assert cache.grant("h0") is None and cache.grant("h4") is not None
