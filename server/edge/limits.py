"""Rate limits: per client IP on registration, pairing (the authorization page and fresh QRs) and the pairing code
form; per access token on `/mcp`. Over a limit: 429 with `Retry-After` (RFC 6585 §4).

The threats: a script registering clients or opening pairings by the thousand (rows written per request, and
QR codes, which the cross-device BCP (draft-ietf-oauth-cross-device-security §6.1.12) asks to rate-limit), a
spray of guesses at pairing codes across many pairings (each pairing already burns after
`VOUCHSIM_PAIRING_MAX_ATTEMPTS` wrong codes), and one token flooding `/mcp`.

Each limit is a token bucket: `limit` requests at once, refilled evenly over `VOUCHSIM_RATE_LIMIT_WINDOW`
seconds, so a burst of `limit` passes and a steady `limit` per window does too. The defaults are generous for a
testbed: a CI suite running a few hundred flows never meets them, a burst of 300 registrations from one address
does.

State is in process, not in the database: a limit is a cheap first line that must not add a write per request
(the very load it guards against), and losing it at a restart costs nothing. With `--workers N` each worker
counts on its own and the kernel spreads connections across them, so one address may get up to N times a
limit before every worker refuses it. The testbed's reset empties the buckets (`RateLimits.clear`). The key is
the socket's peer address; behind a reverse proxy every client shares the proxy's address unless
`VOUCHSIM_RATE_LIMIT_FORWARDED_FOR` says to read the proxy's `X-Forwarded-For`.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.edge.asgi import EdgeHeaders, Scope, client_address
from vouchsim.server.settings import Settings

MAX_KEYS = 100_000  # buckets kept per limit; the least recently used go first (a fresh bucket is a full one)
_PAIRING_CODE = re.compile(r"^/oauth/authorize/pairing/[^/]+/?$")
_FRESH_PAIRING = re.compile(r"^/oauth/authorize/requests/[^/]+/pair/?$")


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """`capacity` requests per key at once, refilled at `capacity / window` per second; keys kept LRU."""

    def __init__(
        self, capacity: int, window: float, *, now: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.now = now
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float | None:
        """None when `key` may go on (one request counted), else the seconds until it may."""
        now = self.now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.capacity), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.capacity), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate

    def clear(self) -> None:
        self._buckets.clear()


class RateLimits:
    """The four limits of one process, from the settings (a limit of 0 is off)."""

    def __init__(self, settings: Settings, *, now: Callable[[], float] = time.monotonic) -> None:
        window = float(settings.rate_limit_window)

        def bucket(limit: int) -> TokenBucket | None:
            return TokenBucket(limit, window, now=now) if limit > 0 else None

        self.registrations = bucket(settings.rate_limit_registrations)
        self.pairings = bucket(settings.rate_limit_pairings)
        self.pairing_codes = bucket(settings.rate_limit_pairing_codes)
        self.mcp = bucket(settings.rate_limit_mcp)

    def clear(self) -> None:
        """Forget every count (the testbed's reset)."""
        for limit in (self.registrations, self.pairings, self.pairing_codes, self.mcp):
            if limit is not None:
                limit.clear()

    def limit_for(self, method: str, path: str) -> tuple[TokenBucket | None, str]:
        """The limit a request counts against and what it is (for the message), or (None, "")."""
        match limited(method, path):
            case "mcp":
                return self.mcp, "requests with this access token"
            case "registrations":
                return self.registrations, "client registrations from your address"
            case "pairings":
                return self.pairings, "pairings started from your address"
            case "pairing_codes":
                return self.pairing_codes, "pairing codes sent from your address"
        return None, ""


def limited(method: str, path: str) -> str | None:
    """Which limit a request to `path` counts against (`mcp`, `registrations`, `pairings` or `pairing_codes`), or
    None: also what the OpenAPI document names a 429 for (`server.openapi.with_edge_answers`)."""
    if path == "/mcp":
        return "mcp" if method != "OPTIONS" else None
    if method == "POST" and path in ("/oauth/register", "/oauth/register/"):
        return "registrations"
    if (method == "GET" and path in ("/oauth/authorize", "/oauth/authorize/")) or (
        method == "POST" and _FRESH_PAIRING.match(path)
    ):
        return "pairings"
    if method == "POST" and _PAIRING_CODE.match(path):
        return "pairing_codes"
    return None


def rate_limit_key(settings: Settings, scope: Scope, headers: EdgeHeaders, path: str) -> str | None:
    """Whom a request counts against: its client address, or on `/mcp` its bearer token (hashed); None for an
    `/mcp` request without one (refused by `/mcp` itself, 401, uncounted)."""
    if path != "/mcp":
        return client_address(settings, scope, headers)
    authorization = headers.get(b"authorization") or ""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hash_secret(token.strip())  # never the token itself in memory longer than the request
