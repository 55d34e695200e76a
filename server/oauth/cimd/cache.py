"""How long a validated metadata document is reused, and how often one host is fetched.

Caching (draft-ietf-oauth-client-id-metadata-document-02 §5.2): the server SHOULD respect HTTP cache headers
(RFC 9111) and MAY bound the lifetime; it MUST NOT cache errors or invalid documents (only `put` stores, and only
validated documents are put). Here:
- `Cache-Control: no-store` or `no-cache` → the document serves the request that fetched it and is fetched again
  next time (no revalidation with ETags: documents are small);
- else `s-maxage`, then `max-age`, then `Expires` minus `Date` (RFC 9111 §4.2.1), less `Age`;
- with none of those, the lower bound;
- always clamped to [`MIN_LIFETIME`, `MAX_LIFETIME`] (5 minutes … 24 hours): a document that says `max-age=0`
  is still reused for 5 minutes (one authorization's authorize → token exchange costs one fetch), and one that
  says a year is fetched again within a day.
The cache is in process: each server process fetches on its own.

Rate limit (draft §8.6, MCP "Authorization Server Abuse Protection"): at most `HostRateLimiter.limit` fetches
per host and port in any `window` seconds, so the server cannot be driven to hammer a third party (nor itself
through an allowed host) by a stream of authorization requests naming ever new document URLs.
"""

from __future__ import annotations

import email.utils
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

from vouchsim.server.core.clock import Clock
from vouchsim.server.oauth.cimd.document import ResolvedMetadata
from vouchsim.server.oauth.cimd.errors import HostRateLimited

MIN_LIFETIME = 5 * 60
MAX_LIFETIME = 24 * 3600


def _directives(values: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            name, _, argument = part.strip().partition("=")
            if name:
                found.setdefault(name.strip().lower(), argument.strip().strip('"'))
    return found


def _seconds(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _http_date(text: str) -> datetime | None:
    try:
        value = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else None


def cache_lifetime(response_headers: Iterable[tuple[str, str]], received_at: datetime) -> int | None:
    """Seconds a document fetched with these response headers (names in lower case) may be reused; None: not at
    all."""
    headers: dict[str, list[str]] = {}
    for name, value in response_headers:
        headers.setdefault(name, []).append(value)
    directives = _directives(headers.get("cache-control", []))
    if "no-store" in directives or "no-cache" in directives:
        return None
    lifetime: int | None = None
    for name in ("s-maxage", "max-age"):
        if name in directives and (seconds := _seconds(directives[name])) is not None:
            lifetime = seconds
            break
    if lifetime is None and headers.get("expires"):
        expires = _http_date(headers["expires"][0])
        date = _http_date(headers["date"][0]) if headers.get("date") else None
        # RFC 9111 §5.3: an Expires that is not a valid date means "already expired".
        lifetime = max(0, int((expires - (date or received_at)).total_seconds())) if expires else 0
    if lifetime is None:
        lifetime = MIN_LIFETIME
    age = _seconds(headers["age"][0].strip()) if headers.get("age") else None
    lifetime -= age or 0
    return min(max(lifetime, MIN_LIFETIME), MAX_LIFETIME)


class DocumentCache:
    """Validated documents by client_id URL, until their lifetime ends. Bounded: the soonest to expire go first."""

    def __init__(self, clock: Clock, max_entries: int = 1000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, ResolvedMetadata] = {}

    def get(self, url: str) -> ResolvedMetadata | None:
        document = self._entries.get(url)
        if document is None:
            return None
        if document.expires_at <= self._clock.now():
            del self._entries[url]
            return None
        return document

    def put(self, document: ResolvedMetadata) -> None:
        if document.expires_at <= self._clock.now():
            return
        self._entries[document.client_id] = document
        if len(self._entries) > self._max_entries:
            now = self._clock.now()
            for url in [url for url, kept in self._entries.items() if kept.expires_at <= now]:
                del self._entries[url]
            while len(self._entries) > self._max_entries:
                del self._entries[min(self._entries, key=lambda url: self._entries[url].expires_at)]

    def forget(self, url: str) -> None:
        self._entries.pop(url, None)

    def __len__(self) -> int:
        return len(self._entries)


class HostRateLimiter:
    """At most `limit` fetches per host key in any `window` seconds (a sliding window of fetch times)."""

    def __init__(self, clock: Clock, limit: int = 10, window: float = 60.0) -> None:
        self._clock = clock
        self.limit = limit
        self.window = timedelta(seconds=window)
        self._fetches: dict[str, deque[datetime]] = {}

    def acquire(self, host_key: str) -> None:
        """Counts one fetch of `host_key`, or raises `HostRateLimited` when the window is full."""
        now = self._clock.now()
        for key in [key for key, times in self._fetches.items() if times[-1] <= now - self.window]:
            del self._fetches[key]  # hosts not fetched within the window are forgotten: the map stays small
        times = self._fetches.setdefault(host_key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            wait = int((times[0] + self.window - now).total_seconds()) + 1
            raise HostRateLimited(
                f"This server fetched {self.limit} metadata documents from {host_key} within "
                f"{int(self.window.total_seconds())} seconds; try again in {wait} seconds."
            )
        times.append(now)
