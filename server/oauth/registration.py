"""RFC 7591 dynamic client registration, on Authlib's `ClientRegistrationEndpoint`.

Open registration (no initial access token), as MCP clients expect. Checked before Authlib's own claim
validation: redirect URIs (at most 20, each passing `redirects.registration_problem`, the parser the authorization
endpoint uses) → `invalid_redirect_uri`; the types and lengths of the fields, control characters in any of them,
and control or bidi characters in `client_name` → `invalid_client_metadata`. Unknown scopes are dropped and the
response says what was registered (RFC 7591 §3.2.1). Unknown metadata is ignored (RFC 7591 §2), except the
non-standard `provider_id` and OIDC's `application_type` (`web` or `native`), which are kept and echoed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc7591 import (
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)

from vouchsim.server.core.crypto import new_id, random_token
from vouchsim.server.core.text import display_text_problem, has_control_characters
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.bridge import bridge
from vouchsim.server.oauth.client_metadata import APPLICATION_TYPES, DEFAULT_GRANT_TYPES
from vouchsim.server.oauth.errors import safe_description
from vouchsim.server.oauth.metadata import AUTH_METHODS, GRANT_TYPES, authorization_server_metadata

# Caps on what one registration may hold (docs/security.md, "Registration hygiene"): redirect URIs as
# `redirects.MAX_PER_CLIENT` says; strings at their column widths, URIs at the 2,000 characters browsers handle.
MAX_REDIRECT_URIS = redirects.MAX_PER_CLIENT
MAX_LIST_ITEMS = 10  # contacts, grant_types, response_types
FIELD_LIMITS = {
    "client_name": 256,  # oauth_clients.client_name
    "scope": 1000,  # as sent, before unknown scopes are dropped; what is kept fits oauth_clients.scope
    "token_endpoint_auth_method": 64,
    "provider_id": 128,
    "application_type": 16,
    "software_id": 256,
    "software_version": 256,
    **dict.fromkeys(("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri"), redirects.MAX_LENGTH),
}
LIST_ITEM_LIMITS = {"contacts": 320, "grant_types": 64, "response_types": 64}  # 320: the longest e-mail address
MAX_JWKS_LENGTH = 16_384  # characters of the `jwks` object as JSON
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def _check_string_list(data: dict[str, Any], name: str, max_items: int, max_length: int) -> None:
    value = data.get(name)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadataError(f"{name} must be an array of strings")
    if len(value) > max_items:
        raise InvalidClientMetadataError(f"{name} may hold at most {max_items} entries")
    for item in value:
        if len(item) > max_length:
            raise InvalidClientMetadataError(f"each entry of {name} must be at most {max_length} characters")
        if has_control_characters(item):
            raise InvalidClientMetadataError(f"{name} must not contain control characters")


def _check_string(data: dict[str, Any], name: str, max_length: int) -> None:
    value = data.get(name)
    if value is None:
        return
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidClientMetadataError(f"{name} must be a string of at most {max_length} characters")
    if has_control_characters(value):
        raise InvalidClientMetadataError(f"{name} must not contain control characters")


def _check_redirect_uris(data: dict[str, Any]) -> None:
    uris = data.get("redirect_uris")
    if uris is not None and (not isinstance(uris, list) or not all(isinstance(v, str) for v in uris)):
        raise InvalidClientMetadataError("redirect_uris must be an array of strings")
    if not uris:
        raise InvalidRedirectURIError("redirect_uris is required for the authorization code flow")
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectURIError(f"redirect_uris may hold at most {MAX_REDIRECT_URIS} URIs")
    for uri in uris:  # the parser of the authorization endpoint: CR/LF, NUL, controls, backslashes and @ are refused
        if problem := redirects.registration_problem(uri):
            raise InvalidRedirectURIError(safe_description(problem))


def granted_registration_scope(scope: str) -> str:
    """RFC 6749 §3.3, RFC 7591 §2: scopes this server does not know are dropped, not refused (a client may name
    scopes of other servers, as claude.ai's `claudeai` does); nothing known left means the default."""
    tokens = scope.split()
    if not all(_SCOPE_TOKEN.match(token) for token in tokens):
        raise InvalidClientMetadataError("scope must be space-separated scope tokens (RFC 6749 section 3.3)")
    known = [name for name in scopes.split(scope) if name in scopes.SUPPORTED_SCOPES]
    return scopes.join(known) if known else scopes.DEFAULT_SCOPE


def prepare_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """Check what Authlib does not and fill the defaults this server applies."""
    _check_redirect_uris(data)
    for name, max_length in LIST_ITEM_LIMITS.items():
        _check_string_list(data, name, MAX_LIST_ITEMS, max_length)
    for name, max_length in FIELD_LIMITS.items():
        _check_string(data, name, max_length)
    if data.get("client_name") is not None and (
        problem := display_text_problem("client_name", data["client_name"], FIELD_LIMITS["client_name"])
    ):
        raise InvalidClientMetadataError(problem)  # the device API's rule for names people read
    if data.get("jwks") is not None and len(json.dumps(data["jwks"])) > MAX_JWKS_LENGTH:
        raise InvalidClientMetadataError(f"jwks must be at most {MAX_JWKS_LENGTH} characters as JSON")
    if data.get("application_type") is not None and data["application_type"] not in APPLICATION_TYPES:
        raise InvalidClientMetadataError("application_type must be web or native")  # OIDC Registration §2
    data = dict(data)
    if data.get("client_name") is not None:
        data["client_name"] = data["client_name"].strip()
    # RFC 7591 §2 would default to authorization_code alone; this server's clients are MCP runtimes that
    # keep sessions alive, so refresh tokens come by default. The response says what was registered.
    data.setdefault("grant_types", list(DEFAULT_GRANT_TYPES))
    data.setdefault("response_types", ["code"])
    data.setdefault("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
    data["scope"] = granted_registration_scope(data.get("scope") or "")
    if data["token_endpoint_auth_method"] not in AUTH_METHODS:
        raise InvalidClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if unknown := set(data["grant_types"]) - set(GRANT_TYPES):
        raise InvalidClientMetadataError(safe_description(f"unsupported grant_types: {', '.join(sorted(unknown))}"))
    if "authorization_code" not in data["grant_types"]:
        raise InvalidClientMetadataError("grant_types must include authorization_code")
    if data["response_types"] != ["code"]:
        raise InvalidClientMetadataError("response_types must be ['code']")  # Authlib refuses '"' in descriptions
    return data


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    def __init__(self, server: Any, issuer: str, save: Callable[..., Any], issued_at: int) -> None:
        super().__init__(server)
        self.issuer = issuer
        self._save = save
        self._issued_at = issued_at

    def authenticate_token(self, request: Any) -> bool:
        return True  # open registration: Authlib needs something truthy

    def get_server_metadata(self) -> dict[str, Any]:
        return authorization_server_metadata(self.issuer)

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        if not isinstance(request.payload.data, dict):
            raise InvalidClientMetadataError("the body must be a JSON object")
        request.payload.data = prepare_metadata(request.payload.data)
        metadata: dict[str, Any] = super().extract_client_metadata(request)
        for name in ("grant_types", "response_types", "token_endpoint_auth_method", "scope"):
            metadata[name] = request.payload.data[name]
        if request.payload.data.get("provider_id") is not None:
            metadata["provider_id"] = request.payload.data["provider_id"]
        if request.payload.data.get("application_type") is not None:  # stored and echoed (MCP 2026-07-28, SEP-837)
            metadata["application_type"] = request.payload.data["application_type"]
        return metadata

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"client_id": new_id("vsc"), "client_id_issued_at": self._issued_at}
        # A secret only for confidential clients (Authlib would hand one to public clients too).
        if request.payload.data["token_endpoint_auth_method"] != "none":  # noqa: S105 (a method name)
            info["client_secret"] = "vscs_" + random_token(32)
            info["client_secret_expires_at"] = 0
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Any:
        return bridge(self._save, client_info, client_metadata)
