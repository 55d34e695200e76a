"""client_id URL → validated metadata: the cache first, then one rate-limited, SSRF-safe fetch.

Concurrent requests for the same URL share one fetch (a lock per URL). Only validated documents are cached
(draft-ietf-oauth-client-id-metadata-document-02 §5.2); a failed refetch of a stale document is a failure, never
the stale copy (§5.1 and docs/cimd.md).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio

from vouchsim.server.core.clock import Clock
from vouchsim.server.oauth.cimd.cache import DocumentCache, HostRateLimiter, cache_lifetime
from vouchsim.server.oauth.cimd.document import ResolvedMetadata, parse_document
from vouchsim.server.oauth.cimd.fetch import DocumentFetcher
from vouchsim.server.oauth.cimd.urls import parse_client_id_url

log = logging.getLogger("vouchsim.cimd")


class MetadataResolver:
    def __init__(
        self,
        fetcher: DocumentFetcher,
        clock: Clock,
        *,
        cache: DocumentCache | None = None,
        limiter: HostRateLimiter | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.clock = clock
        self.cache = cache or DocumentCache(clock)
        self.limiter = limiter or HostRateLimiter(clock)
        self._locks: dict[str, anyio.Lock] = {}

    def forget_all(self) -> None:
        """Forget every cached document and every host's fetch count (a testbed reset)."""
        self.cache = DocumentCache(self.clock)
        self.limiter = HostRateLimiter(self.clock, self.limiter.limit, self.limiter.window.total_seconds())

    async def resolve(self, client_id: str) -> ResolvedMetadata:
        """The validated document of `client_id`; raises a `cimd.errors.CimdError` (all `invalid_client`)."""
        target = parse_client_id_url(client_id)
        if (cached := self.cache.get(client_id)) is not None:
            return cached
        lock = self._locks.setdefault(client_id, anyio.Lock())
        try:
            async with lock:
                if (cached := self.cache.get(client_id)) is not None:
                    return cached  # fetched by the request this one waited for
                self.limiter.acquire(target.host_key)
                fetched = await self.fetcher.fetch(target)
                now = self.clock.now()
                metadata = parse_document(client_id, fetched.body)
                lifetime = cache_lifetime(fetched.headers, now)
                resolved = ResolvedMetadata(
                    metadata=metadata, fetched_at=now, expires_at=now + timedelta(seconds=lifetime or 0)
                )
                self.cache.put(resolved)
                log.info("CIMD: %s is valid, reused for %s s", client_id, lifetime or 0)
                return resolved
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(client_id, None)
