"""The OAuth endpoints' requests and answers as the RFCs spell them, for the OpenAPI document.

The routes (server.oauth.routes) hand the raw query, form or JSON to Authlib (server.oauth.engine and the modules
of its grants and endpoints), which parses and checks them; these structs only tell the document what goes on the
wire. Field names are the RFCs' own. Optional here means optional on the wire: which combination a grant needs is
the RFC's rule, checked by the server, not by this schema.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

_URI = msgspec.Meta(extra_json_schema={"format": "uri"})
_PKCE = msgspec.Meta(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")  # RFC 7636 §4.1


class AuthorizationQuery(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §4.1.1 with PKCE (RFC 7636 §4.3, S256 only) and RFC 8707 `resource`."""

    response_type: Literal["code"]
    client_id: str
    code_challenge: Annotated[str, _PKCE]
    code_challenge_method: Literal["S256"]
    redirect_uri: str | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET
    state: str | msgspec.UnsetType = msgspec.UNSET
    resource: str | msgspec.UnsetType = msgspec.UNSET


class TokenForm(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §4.1.3 (`authorization_code`, with the PKCE `code_verifier`) and §6 (`refresh_token`). A confidential
    client authenticates with HTTP Basic or `client_secret` in the form (one of them, RFC 6749 §2.3)."""

    grant_type: Literal["authorization_code", "refresh_token"]
    code: str | msgspec.UnsetType = msgspec.UNSET
    redirect_uri: str | msgspec.UnsetType = msgspec.UNSET
    code_verifier: Annotated[str, _PKCE] | msgspec.UnsetType = msgspec.UNSET
    refresh_token: str | msgspec.UnsetType = msgspec.UNSET
    client_id: str | msgspec.UnsetType = msgspec.UNSET
    client_secret: str | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET
    resource: str | msgspec.UnsetType = msgspec.UNSET


class RevocationForm(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7009 §2.1: the token to revoke, by the client it was issued to."""

    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | msgspec.UnsetType = msgspec.UNSET
    client_id: str | msgspec.UnsetType = msgspec.UNSET
    client_secret: str | msgspec.UnsetType = msgspec.UNSET


class IntrospectionForm(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7662 §2.1, by an authenticated client."""

    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | msgspec.UnsetType = msgspec.UNSET
    client_id: str | msgspec.UnsetType = msgspec.UNSET
    client_secret: str | msgspec.UnsetType = msgspec.UNSET


class ClientMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7591 §2 client metadata (unknown members are ignored, as §2 says)."""

    redirect_uris: list[Annotated[str, _URI]]
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    grant_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    response_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    client_name: str | msgspec.UnsetType = msgspec.UNSET
    client_uri: Annotated[str, _URI] | msgspec.UnsetType = msgspec.UNSET
    logo_uri: Annotated[str, _URI] | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET
    contacts: list[str] | msgspec.UnsetType = msgspec.UNSET
    tos_uri: Annotated[str, _URI] | msgspec.UnsetType = msgspec.UNSET
    policy_uri: Annotated[str, _URI] | msgspec.UnsetType = msgspec.UNSET
    software_id: str | msgspec.UnsetType = msgspec.UNSET
    software_version: str | msgspec.UnsetType = msgspec.UNSET
    application_type: Literal["native", "web"] | msgspec.UnsetType = msgspec.UNSET


class ClientInformation(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7591 §3.2.1: the client's id (and secret, for a confidential client) beside its registered metadata."""

    client_id: str
    client_id_issued_at: int | msgspec.UnsetType = msgspec.UNSET
    client_secret: str | msgspec.UnsetType = msgspec.UNSET
    client_secret_expires_at: int | msgspec.UnsetType = msgspec.UNSET
    redirect_uris: list[str] | msgspec.UnsetType = msgspec.UNSET


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int | msgspec.UnsetType = msgspec.UNSET
    refresh_token: str | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET


class IntrospectionResponse(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7662 §2.2: `active`, and the token's claims when it is."""

    active: bool
