from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient


def _register(client: TestClient[Any], body: Any) -> Any:
    return client.post("/oauth/register", json=body)


def test_public_client_gets_an_id_and_no_secret(client: TestClient[Any]) -> None:
    response = _register(
        client,
        {
            "client_name": "Acme Agent Client",
            "redirect_uris": ["https://agent.example.com/oauth/callback"],
            "provider_id": "generic",
            "scope": "identity delegation",
            "token_endpoint_auth_method": "none",
            "software_id": "acme",
            "made_up_field": "ignored",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"].startswith("vsc_")
    assert isinstance(body["client_id_issued_at"], int)
    assert "client_secret" not in body
    assert body["client_name"] == "Acme Agent Client"
    assert body["redirect_uris"] == ["https://agent.example.com/oauth/callback"]
    assert body["provider_id"] == "generic"
    assert body["scope"] == "identity delegation"
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert "made_up_field" not in body
    assert response.headers["cache-control"] == "no-store"


def test_confidential_client_defaults_to_client_secret_basic_and_gets_a_secret(
    client: TestClient[Any],
) -> None:
    body = _register(client, {"redirect_uris": ["http://localhost:9999/cb"]}).json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret"].startswith("vscs_")
    assert body["client_secret_expires_at"] == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"redirect_uris": ["http://agent.example.com/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://agent.example.com/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["not a uri"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({}, "invalid_redirect_uri"),
        ({"redirect_uris": "https://agent.example.com/cb"}, "invalid_client_metadata"),
        (
            {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
        (
            {"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://a.example/cb"], "client_name": 42}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://a.example/cb"], "client_uri": "not a uri"}, "invalid_client_metadata"),
        ([1, 2], "invalid_client_metadata"),
    ],
)
def test_bad_metadata_is_refused_with_the_rfc_error(client: TestClient[Any], body: Any, error: str) -> None:
    response = _register(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_malformed_json_is_refused(client: TestClient[Any]) -> None:
    response = client.post("/oauth/register", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


def test_registrations_persist(client: TestClient[Any]) -> None:
    ids = {_register(client, {"redirect_uris": [f"https://a.example/cb{i}"]}).json()["client_id"] for i in range(5)}
    assert len(ids) == 5
    for client_id in ids:
        # A registered client is known to the authorization endpoint (an unknown one gets the error page).
        page = client.get(
            "/oauth/authorize",
            params={"client_id": client_id, "response_type": "code"},
            follow_redirects=False,
        )
        assert "does not exist" not in page.text


@pytest.mark.parametrize(
    "body",
    [
        {"redirect_uris": ["http://evil.example/it's"]},
        {"redirect_uris": ["https://a.example/cb"], "scope": 'identity "x'},
        {"redirect_uris": ["https://a.example/cb"], "scope": "identité"},
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", 'a"b']},
    ],
)
def test_input_with_quotes_or_non_ascii_is_a_400_not_a_500(client: TestClient[Any], body: Any) -> None:
    response = _register(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")


# -- issue 9, finding 4: registration hygiene -----------------------------------------------------------------
CB = "https://a.example/cb"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"redirect_uris": ["http://127.0.0.1/cb\r\nSet-Cookie: x=1"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://127.0.0.1/cb\n"]}, "invalid_redirect_uri"),
        # A NUL byte never reaches registration: the edge refuses it for every route (server.edge.inputs).
        ({"redirect_uris": ["http://127.0.0.1/c\x00b"]}, "invalid_request"),
        ({"redirect_uris": ["https://a.example/c\x1bb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://evil.example\\@127.0.0.1/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["HTTPS://a.example/cb"]}, "invalid_redirect_uri"),  # refused, not normalised
        ({"redirect_uris": [f"https://a.example/{i}" for i in range(21)]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://a.example/" + "x" * 2000]}, "invalid_redirect_uri"),
        ({"redirect_uris": [CB], "client_name": "Acme\x00"}, "invalid_request"),
        ({"redirect_uris": [CB], "client_name": "Acme\r\nAdmin"}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "client_name": "Acme \u202egnp.exe"}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "client_name": "\u2066Acme\u2069"}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "client_name": "   "}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "client_name": "x" * 257}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "scope": "identity " * 200}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "contacts": ["a@example.com"] * 11}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "contacts": ["a" * 321]}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "contacts": ["a@example.com\r\nBcc: b@example.com"]}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "client_uri": "https://a.example/" + "x" * 2000}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "software_id": "s" * 257}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "software_version": "1\x00"}, "invalid_request"),
        ({"redirect_uris": [CB], "grant_types": ["authorization_code"] * 11}, "invalid_client_metadata"),
        ({"redirect_uris": [CB], "jwks": {"keys": [{"kty": "oct", "n": "x" * 20000}]}}, "invalid_client_metadata"),
    ],
)
def test_registration_hygiene(client: TestClient[Any], body: Any, error: str) -> None:
    response = _register(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_twenty_redirect_uris_and_fields_at_their_caps_are_accepted(client: TestClient[Any]) -> None:
    response = _register(
        client,
        {
            "redirect_uris": [f"https://a.example/{i}" for i in range(20)],
            "client_name": " " + "n" * 255,  # shown (and stored) trimmed
            "contacts": ["a@example.com"] * 10,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["client_name"] == "n" * 255


@pytest.mark.parametrize(
    ("asked", "registered"),
    [
        ("identity admin", "identity"),
        ("claudeai identity delegation", "identity delegation"),
        ("claudeai", "identity delegation"),  # nothing known: the default
        ("identity offline_access", "identity offline_access"),
    ],
)
def test_unknown_scopes_are_dropped_at_registration(client: TestClient[Any], asked: str, registered: str) -> None:
    response = _register(client, {"redirect_uris": [CB], "scope": asked})
    assert response.status_code == 201, response.text
    assert response.json()["scope"] == registered  # the response says what was registered (RFC 7591 §3.2.1)
