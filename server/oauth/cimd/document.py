"""What a Client ID Metadata Document must say before this server treats it as a client (draft-ietf-oauth-client-
id-metadata-document-02 §4, §4.1; MCP 2026-07-28 "Client ID Metadata Documents", "For Authorization Servers").

- a JSON object whose `client_id` is the URL it was fetched from, by simple string comparison (§4);
- `client_name` and `redirect_uris` present (MCP: the document MUST include `client_id`, `client_name`,
  `redirect_uris`); every redirect URI passes the same check as a dynamic registration
  (`redirects.registration_problem`); the name is safe to show (no control or bidi characters);
- no `client_secret` or `client_secret_expires_at`, and no shared-secret authentication method (§4.1);
  `private_key_jwt` is allowed by the draft but not offered here, so the method must be absent or `none`;
  no private key material in `jwks` (§4.1);
- `grant_types` within authorization_code and refresh_token (the first among them), `response_types` ["code"];
- `application_type`, when present, `web` or `native`.
Scopes a document lists that this server does not know are dropped, not refused: a document is published once for
every authorization server the client talks to (draft §1), so it may name scopes of others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.cimd import errors
from vouchsim.server.oauth.client_metadata import APPLICATION_TYPES, DEFAULT_GRANT_TYPES, display_text_problem
from vouchsim.server.oauth.metadata import GRANT_TYPES

NAME_MAX_LENGTH = 256  # oauth_clients.client_name is String(256)
SHARED_SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class ClientMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """A validated document: what this server uses of it, and the document itself as published."""

    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str  # always "none": a public client
    scope: str
    application_type: str | None
    document: dict[str, Any]

    @property
    def host(self) -> str:
        """The client_id URL's host: the one thing about this client the server has verified (draft §8.5)."""
        return urlsplit(self.client_id).hostname or ""

    @property
    def redirects_only_to_localhost(self) -> bool:
        """True when every redirect URI is a loopback one (MCP security: "Localhost Redirect URI Risks")."""
        return all(redirects.is_loopback(uri) for uri in self.redirect_uris)


class ResolvedMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """A validated document and when it was fetched; reusable until `expires_at` (== `fetched_at`: never)."""

    metadata: ClientMetadata
    fetched_at: datetime
    expires_at: datetime

    @property
    def client_id(self) -> str:
        return self.metadata.client_id


def parse_document(url: str, body: bytes) -> ClientMetadata:
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise errors.NotJson(f"The metadata document at {url} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise errors.NotJson(f"The metadata document at {url} is not a JSON object.")
    return validate_document(url, data)


def _string_list(url: str, data: dict[str, Any], name: str) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.InvalidDocument(f"The metadata document at {url}: {name} must be an array of strings.")
    return value


def validate_document(url: str, data: dict[str, Any]) -> ClientMetadata:
    """The checks of the module docstring, in that order; raises the `errors` class of the first one broken."""
    if data.get("client_id") != url:
        claimed = data.get("client_id")
        shown = claimed[:200] if isinstance(claimed, str) else "missing"
        raise errors.ClientIdMismatch(
            f"The metadata document at {url} says client_id {shown}; it must be exactly the URL it is served at "
            "(draft section 4)."
        )
    if "client_secret" in data or "client_secret_expires_at" in data:
        raise errors.SecretPresent(
            f"The metadata document at {url} contains client_secret or client_secret_expires_at, which a metadata "
            "document must not (draft section 4.1)."
        )
    method = data.get("token_endpoint_auth_method", "none")
    if method in SHARED_SECRET_METHODS:
        raise errors.SharedSecretAuthMethod(
            f"The metadata document at {url} asks for token_endpoint_auth_method {method}, a shared-secret method "
            "a metadata document cannot use (draft section 4.1); use none."
        )
    if method != "none":
        shown = method[:60] if isinstance(method, str) else "of the wrong type"
        raise errors.UnsupportedAuthMethod(
            f"The metadata document at {url} asks for token_endpoint_auth_method {shown}; this server offers only "
            "none to clients identified by a metadata document."
        )
    jwks = data.get("jwks")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if isinstance(keys, list) and any(isinstance(key, dict) and key.keys() & set(_PRIVATE_JWK_MEMBERS) for key in keys):
        raise errors.PrivateKeyMaterial(
            f"The metadata document at {url} publishes private key material in jwks (draft section 4.1)."
        )
    if problem := display_text_problem("client_name", data.get("client_name"), NAME_MAX_LENGTH):
        raise errors.InvalidDocument(f"The metadata document at {url}: {problem} (MCP requires client_name).")
    uris = _string_list(url, data, "redirect_uris")
    if not uris:
        raise errors.InvalidDocument(f"The metadata document at {url} has no redirect_uris (MCP requires them).")
    if len(uris) > redirects.MAX_PER_CLIENT:
        raise errors.InvalidRedirectUri(
            f"The metadata document at {url} lists more than {redirects.MAX_PER_CLIENT} redirect_uris."
        )
    for uri in uris:
        if problem := redirects.registration_problem(uri):
            raise errors.InvalidRedirectUri(f"The metadata document at {url}: {problem}.")
    grant_types = _string_list(url, data, "grant_types") or list(DEFAULT_GRANT_TYPES)
    if unknown := set(grant_types) - set(GRANT_TYPES):
        raise errors.InvalidDocument(
            f"The metadata document at {url}: unsupported grant_types {', '.join(sorted(unknown))[:100]}."
        )
    if "authorization_code" not in grant_types:
        raise errors.InvalidDocument(f"The metadata document at {url}: grant_types must include authorization_code.")
    response_types = _string_list(url, data, "response_types") or ["code"]
    if response_types != ["code"]:
        raise errors.InvalidDocument(f"The metadata document at {url}: response_types must be [code].")
    application_type = data.get("application_type")
    if application_type is not None and application_type not in APPLICATION_TYPES:
        raise errors.InvalidDocument(f"The metadata document at {url}: application_type must be web or native.")
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise errors.InvalidDocument(f"The metadata document at {url}: scope must be a string.")
    known = [name for name in scopes.split(scope) if name in scopes.SUPPORTED_SCOPES]
    return ClientMetadata(
        client_id=url,
        client_name=data["client_name"].strip(),
        redirect_uris=tuple(uris),
        grant_types=tuple(dict.fromkeys(grant_types)),
        response_types=("code",),
        token_endpoint_auth_method="none",  # noqa: S106 (a method name)
        scope=scopes.join(known) if known else scopes.DEFAULT_SCOPE,
        application_type=application_type,
        document=data,
    )
