"""What a metadata document must say (draft-ietf-oauth-client-id-metadata-document-02 §4, §4.1; MCP 2026-07-28
"Client ID Metadata Documents")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.tests.cimd_support import document
from vouchsim.server.oauth.cimd import errors
from vouchsim.server.oauth.cimd.document import parse_document, validate_document

URL = "https://app.example.com/oauth/client-metadata.json"


def test_the_specification_example_is_accepted() -> None:
    body = {
        "client_id": URL,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example.com",
        "logo_uri": "https://app.example.com/logo.png",
        "redirect_uris": ["http://127.0.0.1:3000/callback", "http://localhost:3000/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    metadata = parse_document(URL, json.dumps(body).encode())
    assert metadata.client_id == URL
    assert metadata.client_name == "Example MCP Client"
    assert metadata.redirect_uris == ("http://127.0.0.1:3000/callback", "http://localhost:3000/callback")
    assert metadata.grant_types == ("authorization_code",)
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.scope == "identity delegation"
    assert metadata.document == body
    assert metadata.host == "app.example.com"
    assert metadata.redirects_only_to_localhost


def test_defaults_and_scopes() -> None:
    minimal = {"client_id": URL, "client_name": " Tool ", "redirect_uris": ["https://app.example.com/cb"]}
    metadata = validate_document(URL, minimal)
    assert metadata.client_name == "Tool"
    assert metadata.grant_types == ("authorization_code", "refresh_token")  # as for a dynamic registration
    assert metadata.response_types == ("code",)
    assert metadata.application_type is None
    assert not metadata.redirects_only_to_localhost
    # A document serves every authorization server: scopes of others are dropped, not refused.
    assert validate_document(URL, {**minimal, "scope": "identity mail.read offline_access"}).scope == (
        "identity offline_access"
    )
    assert validate_document(URL, {**minimal, "scope": "mail.read"}).scope == "identity delegation"
    assert validate_document(URL, {**minimal, "application_type": "native"}).application_type == "native"


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"client_id": URL + "?x"}, errors.ClientIdMismatch, "exactly the URL"),
        ({"client_id": "https://APP.example.com/oauth/client-metadata.json"}, errors.ClientIdMismatch, "exactly"),
        ({"client_id": None}, errors.ClientIdMismatch, "missing"),
        ({"client_id": 7}, errors.ClientIdMismatch, "missing"),
        ({"client_secret": "s3cret"}, errors.SecretPresent, "client_secret"),
        ({"client_secret_expires_at": 0}, errors.SecretPresent, "client_secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, errors.SharedSecretAuthMethod, "shared-secret"),
        ({"token_endpoint_auth_method": "client_secret_post"}, errors.SharedSecretAuthMethod, "shared-secret"),
        ({"token_endpoint_auth_method": "client_secret_jwt"}, errors.SharedSecretAuthMethod, "shared-secret"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, errors.UnsupportedAuthMethod, "only none"),
        ({"token_endpoint_auth_method": ["none"]}, errors.UnsupportedAuthMethod, "wrong type"),
        ({"jwks": {"keys": [{"kty": "EC", "d": "private"}]}}, errors.PrivateKeyMaterial, "private key"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, errors.PrivateKeyMaterial, "private key"),
        ({"client_name": None}, errors.InvalidDocument, "client_name"),
        ({"client_name": "  "}, errors.InvalidDocument, "client_name"),
        ({"client_name": 12}, errors.InvalidDocument, "client_name"),
        ({"client_name": "x" * 257}, errors.InvalidDocument, "at most 256"),
        ({"client_name": "Good\u202eevil"}, errors.InvalidDocument, "bidirectional"),
        ({"client_name": "Bell\u0007"}, errors.InvalidDocument, "control"),
        ({"redirect_uris": None}, errors.InvalidDocument, "redirect_uris"),
        ({"redirect_uris": []}, errors.InvalidDocument, "redirect_uris"),
        ({"redirect_uris": "https://a.example/cb"}, errors.InvalidDocument, "array of strings"),
        ({"redirect_uris": ["http://app.example.com/cb"]}, errors.InvalidRedirectUri, "https"),
        ({"redirect_uris": ["https://app.example.com/cb#x"]}, errors.InvalidRedirectUri, "fragment"),
        ({"redirect_uris": ["javascript:alert(1)"]}, errors.InvalidRedirectUri, "https"),
        ({"redirect_uris": ["http://evil.example\\@127.0.0.1:3000/callback"]}, errors.InvalidRedirectUri, "backslash"),
        ({"redirect_uris": ["http://127.0.0.1:3000/cb\r\n"]}, errors.InvalidRedirectUri, "control"),
        ({"redirect_uris": [f"https://a.example/{i}" for i in range(21)]}, errors.InvalidRedirectUri, "more than 20"),
        ({"grant_types": ["client_credentials"]}, errors.InvalidDocument, "unsupported grant_types"),
        ({"grant_types": ["refresh_token"]}, errors.InvalidDocument, "include authorization_code"),
        ({"grant_types": "authorization_code"}, errors.InvalidDocument, "array of strings"),
        ({"response_types": ["token"]}, errors.InvalidDocument, "response_types"),
        ({"application_type": "desktop"}, errors.InvalidDocument, "web or native"),
        ({"scope": ["identity"]}, errors.InvalidDocument, "scope must be a string"),
    ],
)
def test_each_broken_rule_is_its_own_error(change: dict[str, Any], error: type[errors.CimdError], words: str) -> None:
    body = document(URL)
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(error) as refused:
        validate_document(URL, body)
    assert words in refused.value.description
    assert refused.value.code == "invalid_client"


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b"", b"\xff\xfe", b"[1, 2]", b'"a string"', b"null", b"[" * 5000 + b"]" * 5000],
)
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(errors.NotJson):
        parse_document(URL, body)
