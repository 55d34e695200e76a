"""Discovery documents: RFC 8414 (authorization server metadata) and RFC 9728 (protected resource metadata)."""

from __future__ import annotations

from typing import Any

from vouchsim.server.core.issuer import resource_url
from vouchsim.server.oauth import scopes

AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["authorization_code", "refresh_token"]


def authorization_server_metadata(issuer: str, *, registration: bool = True, cimd: bool = True) -> dict[str, Any]:
    """RFC 8414 §2. Also served as `/.well-known/openid-configuration`, which some MCP clients try first.

    `registration`: RFC 7591 is offered (`registration_endpoint`); `cimd`: Client ID Metadata Documents are
    (`client_id_metadata_document_supported`, draft-ietf-oauth-client-id-metadata-document-02 §6). Both follow
    `VOUCHSIM_REGISTRATION` (docs/client-registration.md); a client picks by what is advertised here.
    """
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": list(scopes.SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "client_id_metadata_document_supported": cimd,
        "service_documentation": f"{issuer}/schema",
    }
    if registration:
        metadata["registration_endpoint"] = f"{issuer}/oauth/register"
    return metadata


def protected_resource_metadata(issuer: str) -> dict[str, Any]:
    """RFC 9728 §2, for the one resource: the MCP endpoint."""
    return {
        "resource": resource_url(issuer),
        "authorization_servers": [issuer],
        "scopes_supported": list(scopes.RESOURCE_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "Vouchsim MCP",
        "resource_documentation": f"{issuer}/schema",
    }
