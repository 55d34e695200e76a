"""Discovery: authorization server metadata (RFC 8414), protected resource metadata (RFC 9728), and the JWKS of
the keys that sign delegation tokens (RFC 7517)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency

from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.metadata import authorization_server_metadata, protected_resource_metadata


@get(["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"], tags=["discovery"])
async def authorization_server_metadata_route(
    issuer: NamedDependency[str], clients: NamedDependency[ClientDirectory]
) -> dict[str, Any]:
    """RFC 8414 authorization server metadata; the registration paths follow `VOUCHSIM_REGISTRATION`."""
    return authorization_server_metadata(issuer, registration=clients.offers_registration, cimd=clients.offers_cimd)


@get(["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"], tags=["discovery"])
async def protected_resource_metadata_route(issuer: NamedDependency[str]) -> dict[str, Any]:
    """RFC 9728 protected resource metadata for the MCP endpoint."""
    return protected_resource_metadata(issuer)


@get("/.well-known/jwks.json", tags=["discovery"])
async def jwks(delegation_tokens: NamedDependency[DelegationTokens]) -> Response[Any]:
    """The keys that sign delegation tokens (RFC 7517), retired ones included until their tokens have expired."""
    return Response(
        content=await delegation_tokens.jwks(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=60"},
    )
