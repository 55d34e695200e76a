"""The edge: plain ASGI layers around the whole app that judge a request before any handler sees it.

    hosts.HostGuard      the `Host` header names us (DNS rebinding with a derived issuer)      421
    cors.CorsLayer       CORS answers follow the Origin allow-list of `/mcp`                  403 on a foreign preflight
    limits.RateLimitLayer  registrations, pairings and codes per client IP, `/mcp` per token   429 + Retry-After
    inputs.InputGuard    size, UTF-8, nesting depth and NUL of path, query, headers and body  400 / 413

`stack(app, settings, limits)` puts them together in that order, outermost first; `server.app` wires it. Each
refusal is JSON in the shape of the endpoint refused (`asgi.refuse`): `{"error", "error_description"}` on the OAuth
endpoints and the device API, a JSON-RPC error on `/mcp`. docs/security.md says which threat each layer answers.
"""

from __future__ import annotations

from vouchsim.server.edge.asgi import ASGIApp
from vouchsim.server.edge.cors import CorsLayer
from vouchsim.server.edge.hosts import HostGuard
from vouchsim.server.edge.inputs import InputGuard
from vouchsim.server.edge.limits import RateLimitLayer, RateLimits
from vouchsim.server.settings import Settings


def stack(app: ASGIApp, settings: Settings, limits: RateLimits) -> ASGIApp:
    """`app` inside the edge layers."""
    guarded: ASGIApp = InputGuard(app)
    guarded = RateLimitLayer(guarded, settings, limits)
    guarded = CorsLayer(guarded, settings)
    return HostGuard(guarded, settings)
