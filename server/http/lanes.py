"""What the fast lanes share (`server.mcp.routes.fast_lane`, `server.device.routes.decision_lane`): a hot route's
plain case served straight from the ASGI scope, in front of Litestar's router, which still routes every other case
(and documents the route) as before."""

from __future__ import annotations

import re
from typing import Final

# The `Host` values Litestar's router lets through (RFC 3986 reg-name, IP literals, a port); it answers 400 to others.
_ROUTABLE_HOST: Final = re.compile(r"\A[0-9A-Za-z!$&'()*+,;=\-._~:\[\]@%]*\Z")


def routable_host(host: str | None) -> bool:
    """Whether Litestar's router would accept this `Host` (no header at all: yes)."""
    return host is None or _ROUTABLE_HOST.match(host) is not None
