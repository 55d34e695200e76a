"""Cache lifetimes from HTTP headers within [5 min, 24 h] (draft §5.2, RFC 9111), the bounded cache, and the
per-host fetch limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.oauth.cimd.cache import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    DocumentCache,
    HostRateLimiter,
    cache_lifetime,
)
from vouchsim.server.oauth.cimd.document import ResolvedMetadata, validate_document
from vouchsim.server.oauth.cimd.errors import HostRateLimited

NOW = FrozenClock().now()
DATE = "Wed, 25 Nov 2026 12:00:00 GMT"  # == NOW


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ([], MIN_LIFETIME),
        ([("cache-control", "max-age=3600")], 3600),
        ([("cache-control", "public, max-age=7200, must-revalidate")], 7200),
        ([("cache-control", 'max-age="900"')], 900),
        ([("cache-control", "max-age=60, s-maxage=1800")], 1800),
        ([("cache-control", "max-age=0")], MIN_LIFETIME),
        ([("cache-control", "max-age=31536000")], MAX_LIFETIME),
        ([("cache-control", "max-age=junk")], MIN_LIFETIME),
        ([("cache-control", "max-age=3600"), ("age", "3000")], 600),
        ([("cache-control", "max-age=3600"), ("age", "3500")], MIN_LIFETIME),
        ([("cache-control", "no-store")], None),
        ([("cache-control", "max-age=3600"), ("cache-control", "no-store")], None),
        ([("cache-control", "No-Cache")], None),
        ([("expires", "Wed, 25 Nov 2026 14:00:00 GMT"), ("date", DATE)], 7200),
        ([("expires", "Wed, 25 Nov 2026 14:00:00 GMT")], 7200),  # no Date: from when it was received
        ([("expires", "Wed, 25 Nov 2026 11:00:00 GMT"), ("date", DATE)], MIN_LIFETIME),
        ([("expires", "0")], MIN_LIFETIME),  # RFC 9111 §5.3: invalid means already expired
        ([("expires", "Wed, 25 Nov 2026 14:00:00 GMT"), ("cache-control", "max-age=600")], 600),
    ],
)
def test_cache_lifetime(headers: list[tuple[str, str]], lifetime: int | None) -> None:
    assert cache_lifetime(headers, NOW) == lifetime


def resolved(url: str, seconds: int, clock: FrozenClock) -> ResolvedMetadata:
    metadata = validate_document(url, {"client_id": url, "client_name": "c", "redirect_uris": ["https://a.example/"]})
    now = clock.now()
    return ResolvedMetadata(metadata=metadata, fetched_at=now, expires_at=now + timedelta(seconds=seconds))


def test_the_cache_keeps_a_document_until_it_expires() -> None:
    clock = FrozenClock()
    cache = DocumentCache(clock)
    cache.put(resolved("https://a.example/c", 600, clock))
    cache.put(resolved("https://b.example/c", 0, clock))  # not reusable: never stored
    assert len(cache) == 1
    clock.advance(599)
    assert cache.get("https://a.example/c") is not None
    clock.advance(1)
    assert cache.get("https://a.example/c") is None
    assert len(cache) == 0


def test_a_full_cache_drops_the_expired_then_the_soonest_to_expire() -> None:
    clock = FrozenClock()
    cache = DocumentCache(clock, max_entries=2)
    cache.put(resolved("https://a.example/c", 100, clock))
    cache.put(resolved("https://b.example/c", 900, clock))
    cache.put(resolved("https://c.example/c", 500, clock))
    assert cache.get("https://a.example/c") is None
    assert cache.get("https://b.example/c") is not None and cache.get("https://c.example/c") is not None
    clock.advance(600)  # c has expired
    cache.put(resolved("https://d.example/c", 300, clock))
    assert cache.get("https://b.example/c") is not None and cache.get("https://d.example/c") is not None


def test_the_rate_limit_counts_fetches_per_host_in_a_sliding_window() -> None:
    clock = FrozenClock()
    limiter = HostRateLimiter(clock, limit=3, window=60)
    for _ in range(3):
        limiter.acquire("a.example:443")
        clock.advance(10)
    limiter.acquire("b.example:443")  # another host has its own window
    with pytest.raises(HostRateLimited) as limited:
        limiter.acquire("a.example:443")
    assert "try again in 31 seconds" in limited.value.description
    assert limited.value.code == "invalid_client"
    clock.advance(30)  # the first fetch leaves the window
    limiter.acquire("a.example:443")
    with pytest.raises(HostRateLimited):
        limiter.acquire("a.example:443")
