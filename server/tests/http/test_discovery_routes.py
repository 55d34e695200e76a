from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER


def test_authorization_server_metadata_names_every_endpoint(client: TestClient[Any]) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        metadata = client.get(path).json()
        assert metadata["issuer"] == ISSUER
        assert metadata["authorization_endpoint"] == f"{ISSUER}/oauth/authorize"
        assert metadata["token_endpoint"] == f"{ISSUER}/oauth/token"
        assert metadata["registration_endpoint"] == f"{ISSUER}/oauth/register"
        assert metadata["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
        assert metadata["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
        assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        assert {"identity", "delegation"} <= set(metadata["scopes_supported"])
        assert set(metadata["token_endpoint_auth_methods_supported"]) == {
            "none",
            "client_secret_basic",
            "client_secret_post",
        }


def test_protected_resource_metadata_points_at_the_mcp_endpoint(client: TestClient[Any]) -> None:
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        metadata = client.get(path).json()
        assert metadata["resource"] == f"{ISSUER}/mcp"
        assert metadata["authorization_servers"] == [ISSUER]
        assert metadata["bearer_methods_supported"] == ["header"]
        assert metadata["scopes_supported"] == ["identity", "delegation"]


def test_issuer_follows_host_and_forwarded_proto_but_never_forwarded_host(client: TestClient[Any]) -> None:
    metadata = client.get(
        "/.well-known/oauth-authorization-server",
        headers={
            "Host": "mcp.example.com:8443",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.test",
        },
    ).json()
    assert metadata["issuer"] == "https://mcp.example.com:8443"
    resource = client.get(
        "/.well-known/oauth-protected-resource/mcp",
        headers={"Host": "127.0.0.1:8741", "X-Forwarded-Proto": "http"},
    ).json()
    assert resource["resource"] == "http://127.0.0.1:8741/mcp"


def test_discovery_allows_browser_clients(client: TestClient[Any]) -> None:
    response = client.options(
        "/.well-known/oauth-authorization-server",
        headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "http://localhost:6274"


def test_jwks_is_a_key_set(client: TestClient[Any]) -> None:
    assert isinstance(client.get("/.well-known/jwks.json").json()["keys"], list)


def test_framework_errors_use_the_common_error_shape(client: TestClient[Any]) -> None:
    missing = client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong_method = client.put("/oauth/token")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


def test_openapi_document_and_health(client: TestClient[Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/oauth/register" in paths and "/device/enrol" in paths
