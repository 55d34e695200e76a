"""Small rules of the 2026-07-28 authorization work, without HTTP: the canonical resource, the step-up
challenge's scope, `prompt`, and what the person is shown about a client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vouchsim.server.core.issuer import canonical_resource
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.authorize import prompt_none_error, prompt_values
from vouchsim.server.pairing.identity import client_identity
from vouchsim.server.storage.models import OAuthClient


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://vouch.test/mcp", "https://vouch.test/mcp"),
        ("HTTPS://VOUCH.TEST/mcp", "https://vouch.test/mcp"),
        ("https://Vouch.Test:8443/mcp/", "https://vouch.test:8443/mcp"),
        ("https://vouch.test/MCP", "https://vouch.test/MCP"),  # the path is case-sensitive
        ("http://[::1]:8741/mcp", "http://[::1]:8741/mcp"),
        ("not a url/", "not a url"),
    ],
)
def test_the_canonical_resource_lowers_scheme_and_host_only(given: str, canonical: str) -> None:
    assert canonical_resource(given) == canonical


def test_the_challenge_scope_keeps_resource_scopes_and_drops_offline_access() -> None:
    assert scopes.challenge_scope(("identity", "offline_access"), "delegation") == "identity delegation"
    assert scopes.challenge_scope(("delegation",), "identity") == "delegation identity"
    assert scopes.challenge_scope(("offline_access",), "delegation") == "delegation"


@pytest.mark.parametrize(
    ("prompt", "signed_in", "error"),
    [
        (None, False, None),
        ("consent", True, None),
        ("login consent", False, None),
        ("none", False, "login_required"),
        ("none", True, "consent_required"),
        ("none login", True, "invalid_request"),
        ("select_account", True, None),
    ],
)
def test_prompt_none_always_fails_because_a_page_is_always_shown(
    prompt: str | None, signed_in: bool, error: str | None
) -> None:
    found = prompt_none_error(prompt_values(prompt), signed_in)
    assert (found[0] if found else None) == error


def _client(client_id: str, kind: str, redirect_uris: list[str]) -> OAuthClient:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    return OAuthClient(
        client_id=client_id,
        client_name="x",
        redirect_uris=redirect_uris,
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="identity",
        client_metadata={},
        client_id_issued_at=0,
        created_at=now,
        kind=kind,
    )


def test_only_a_metadata_document_client_has_a_verified_host_and_a_localhost_warning() -> None:
    cimd = client_identity(_client("https://App.Example.com/c.json", "cimd", ["http://127.0.0.1:3000/cb"]))
    assert cimd.verified_host == "app.example.com" and cimd.localhost_only
    mixed = client_identity(
        _client("https://app.example.com/c.json", "cimd", ["http://localhost/cb", "https://app.example.com/cb"])
    )
    assert mixed.verified_host == "app.example.com" and not mixed.localhost_only
    loopback_v6 = client_identity(
        _client("https://a.example/c", "cimd", ["http://[::1]:9/cb", "http://localhost:8/cb"])
    )
    assert loopback_v6.localhost_only
    registered = client_identity(_client("vsc_abc", "registered", ["http://127.0.0.1:3000/cb"]))
    assert registered.verified_host is None and not registered.localhost_only
    pinned = client_identity(_client("https://app.example.com/c.json", "preregistered", ["http://127.0.0.1/cb"]))
    assert pinned.verified_host is None
