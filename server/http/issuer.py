"""The issuer of a request: the one home of `issuer_of`, for the OAuth routes, the device API and `/mcp` alike.

The rule itself (configured, else Host and `X-Forwarded-Proto`) is `core.issuer.derive_issuer`; this module only
reads it off a Litestar request.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from vouchsim.server.core.issuer import derive_issuer
from vouchsim.server.core.runtime import Runtime


def issuer_of(request: Request[Any, Any, Any], runtime: Runtime) -> str:
    return derive_issuer(
        runtime.settings.issuer,
        # What `request.url.scheme` says, without building the whole URL (parsed per request, for this alone).
        scheme=request.scope.get("scheme", "http"),
        host=request.headers.get("host"),
        forwarded_proto=request.headers.get("x-forwarded-proto"),
    )


async def provide_issuer(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> str:
    """`issuer` as a Litestar dependency (`Provide(provide_issuer)`); `runtime` is the app's dependency."""
    return issuer_of(request, runtime)
