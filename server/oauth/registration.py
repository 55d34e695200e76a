"""RFC 7591 dynamic client registration, on Authlib's `ClientRegistrationEndpoint`.

Open registration (no initial access token), as MCP clients expect. Checked before Authlib's own claim
validation: redirect URIs (https, or http on loopback; no fragment) → `invalid_redirect_uri`, and the types of
the fields we rely on → `invalid_client_metadata`. Unknown metadata is ignored (RFC 7591 §2), except the
non-standard `provider_id` and OIDC's `application_type` (`web` or `native`), which are kept and echoed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc7591 import (
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)

from vouchsim.server.core.crypto import new_id, random_token
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.client_metadata import APPLICATION_TYPES, DEFAULT_GRANT_TYPES
from vouchsim.server.oauth.engine import _bridge
from vouchsim.server.oauth.errors import safe_description
from vouchsim.server.oauth.metadata import AUTH_METHODS, GRANT_TYPES, authorization_server_metadata


def _check_string_list(data: dict[str, Any], name: str) -> None:
    value = data.get(name)
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise InvalidClientMetadataError(f"{name} must be an array of strings")


def _check_string(data: dict[str, Any], name: str, max_length: int = 512) -> None:
    value = data.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > max_length):
        raise InvalidClientMetadataError(f"{name} must be a string of at most {max_length} characters")


def prepare_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """Check what Authlib does not and fill the defaults this server applies."""
    for name in ("redirect_uris", "grant_types", "response_types", "contacts"):
        _check_string_list(data, name)
    for name in ("client_name", "scope", "token_endpoint_auth_method"):
        _check_string(data, name)
    _check_string(data, "provider_id", 128)
    if data.get("application_type") is not None and data["application_type"] not in APPLICATION_TYPES:
        raise InvalidClientMetadataError("application_type must be web or native")  # OIDC Registration §2
    uris = data.get("redirect_uris")
    if not uris:
        raise InvalidRedirectURIError("redirect_uris is required for the authorization code flow")
    for uri in uris:
        problem = redirects.registration_problem(uri)
        if problem:
            raise InvalidRedirectURIError(safe_description(problem))
    data = dict(data)
    # RFC 7591 §2 would default to authorization_code alone; this server's clients are MCP runtimes that
    # keep sessions alive, so refresh tokens come by default. The response says what was registered.
    data.setdefault("grant_types", list(DEFAULT_GRANT_TYPES))
    data.setdefault("response_types", ["code"])
    data.setdefault("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
    data.setdefault("scope", scopes.DEFAULT_SCOPE)
    if data["token_endpoint_auth_method"] not in AUTH_METHODS:
        raise InvalidClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if unknown := set(data["grant_types"]) - set(GRANT_TYPES):
        raise InvalidClientMetadataError(safe_description(f"unsupported grant_types: {', '.join(sorted(unknown))}"))
    if "authorization_code" not in data["grant_types"]:
        raise InvalidClientMetadataError("grant_types must include authorization_code")
    if data["response_types"] != ["code"]:
        raise InvalidClientMetadataError("response_types must be ['code']")  # Authlib refuses '"' in descriptions
    if unknown := set(scopes.split(data["scope"])) - set(scopes.SUPPORTED_SCOPES):
        raise InvalidClientMetadataError(safe_description(f"unsupported scope: {' '.join(sorted(unknown))}"))
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
        return _bridge(self._save, client_info, client_metadata)
