"""The OpenAPI document (`/schema/openapi.json`) describes what handlers read themselves and every error they answer
with: the OAuth endpoints' forms, JSON and query parameters (handed raw to Authlib), the device API's bodies (decoded
after the signature check), and the 400/401 answers, in the server's own error shape. The fuzz suite
(server/tests/fuzz) holds the server to this document; these tests hold the document to the endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# Operations that take no input and need no credential: nothing to refuse.
NO_INPUT = {
    "/healthz",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/jwks.json",
}


@pytest.fixture
def document(client: TestClient[Any]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def body_schema(document: dict[str, Any], path: str, media_type: str, method: str = "post") -> dict[str, Any]:
    return document["paths"][path][method]["requestBody"]["content"][media_type]["schema"]  # type: ignore[no-any-return]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


def response_schema(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    return resolve(document, response["content"][JSON]["schema"])


def test_the_token_revocation_and_introspection_forms_are_described(document: dict[str, Any]) -> None:
    token = body_schema(document, "/oauth/token", FORM)
    assert token["required"] == ["grant_type"]
    assert token["properties"]["grant_type"]["enum"] == ["authorization_code", "refresh_token"]
    assert {"code", "redirect_uri", "code_verifier", "refresh_token", "client_id", "resource"} <= set(
        token["properties"]
    )
    assert body_schema(document, "/oauth/revoke", FORM)["required"] == ["token"]
    assert body_schema(document, "/oauth/revoke", JSON)["required"] == ["token"]  # RFC 7009 as JSON, too
    assert body_schema(document, "/oauth/introspect", FORM)["required"] == ["token"]


def test_registration_takes_rfc_7591_metadata_as_json(document: dict[str, Any]) -> None:
    metadata = body_schema(document, "/oauth/register", JSON)
    assert metadata["required"] == ["redirect_uris"]
    assert metadata["properties"]["redirect_uris"]["items"]["format"] == "uri"
    assert set(metadata["properties"]["token_endpoint_auth_method"]["enum"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
    }
    created = document["paths"]["/oauth/register"]["post"]["responses"]["201"]
    assert response_schema(document, created)["required"] == ["client_id"]


def test_the_authorization_request_parameters_are_described(document: dict[str, Any]) -> None:
    operation = document["paths"]["/oauth/authorize"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {name for name, p in parameters.items() if p["required"]} == {
        "response_type",
        "client_id",
        "code_challenge",
        "code_challenge_method",
    }
    assert parameters["code_challenge_method"]["schema"]["enum"] == ["S256"]
    assert {"redirect_uri", "scope", "state", "resource"} <= set(parameters)
    # A redirect (to the page, or back to the client with an error) or an error page, the edge's (421, 429) too:
    # never a JSON 200.
    assert set(operation["responses"]) == {"303", "400", "421", "429"}
    assert "content" not in operation["responses"]["303"]
    for status in ("400", "421", "429"):
        assert set(operation["responses"][status]["content"]) == {"text/html"}


def test_the_device_api_bodies_are_its_own_request_structs(document: dict[str, Any]) -> None:
    enrol = body_schema(document, "/device/enrol", JSON)
    assert set(enrol["required"]) == {"public_key", "name"}
    assert enrol["additionalProperties"] is False  # the device API rejects unknown fields
    assert body_schema(document, "/device/pairings/claim", JSON)["required"] == ["qr_payload"]
    decision = body_schema(document, "/device/delegations/{delegation_id}/decision", JSON)
    assert set(decision["required"]) == {"decision", "nonce", "signature"}
    approve = document["paths"]["/device/pairings/{pairing_id}/approve"]["post"]["requestBody"]
    assert approve["required"] is False  # none, or {}


def test_every_operation_that_takes_input_documents_its_400_and_every_authenticated_one_its_401(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path in NO_INPUT:
                continue
            assert "400" in responses, (method, path)
            if path.startswith("/device/") or path in {"/oauth/token", "/oauth/revoke", "/oauth/introspect"}:
                assert "401" in responses, (method, path)
            for status in ("400", "401"):
                if status in responses and JSON in responses[status].get("content", {}):
                    # The server's error shape, not Litestar's default {status_code, detail, extra}.
                    error = response_schema(document, responses[status])
                    assert error["required"] == ["error"], (method, path, status)
