"""The edge: four checks around the whole app that judge a request before any handler sees it.

    hosts   the host guard: the `Host` header names us (DNS rebinding, derived issuer)   421
    cors    CORS answers follow the Origin allow-list of `/mcp`                          403 on a foreign preflight
    limits  registrations, pairings and codes per client IP, `/mcp` per token            429 + Retry-After
    inputs  the input guard: size, UTF-8, depth and NUL of path, query, headers, body    400 / 413

`stack(app, settings, limits)` runs them in that order around `app` as one ASGI callable (`layer.Edge`: one pass
over the headers per request, not four nested layers); `server.app` wires it. Each refusal is JSON in the shape
of the endpoint refused (`asgi.refuse`): `{"error", "error_description"}` on the OAuth endpoints and the device
API, a JSON-RPC error on `/mcp`. docs/security.md says which threat each check answers.
"""

from __future__ import annotations

from vouchsim.server.edge.asgi import ASGIApp
from vouchsim.server.edge.layer import Edge
from vouchsim.server.edge.limits import RateLimits
from vouchsim.server.settings import Settings


def stack(app: ASGIApp, settings: Settings, limits: RateLimits) -> ASGIApp:
    """`app` inside the edge."""
    return Edge(app, settings, limits)
