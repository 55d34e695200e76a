"""The token, revocation and introspection endpoints, and the /mcp challenge that tokens get past."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER
from server.tests.support import Flow, authorize_params, exchange, register
from vouchsim.server.core.clock import FrozenClock


def _tokens(flow: Flow, info: dict[str, Any], pkce: tuple[str, str], **extra: str) -> dict[str, Any]:
    code = flow.authorize(authorize_params(info, pkce[1]))["code"]
    response = exchange(flow.client, info, code, pkce[0], **extra)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _mcp(client: TestClient[Any], access_token: str | None, **headers: str) -> Any:
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
    }
    return client.post("/mcp", json=initialize, headers=headers)


def test_code_exchange_returns_a_bearer_pair(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    code = flow.authorize(authorize_params(public_client, verifier_challenge[1]))["code"]
    response = exchange(flow.client, public_client, code, verifier_challenge[0])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "identity delegation"
    assert body["access_token"] and body["refresh_token"]
    assert _mcp(flow.client, body["access_token"]).status_code == 200


def test_replayed_code_is_refused_and_revokes_what_it_issued(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    code = flow.authorize(authorize_params(public_client, verifier_challenge[1]))["code"]
    first = exchange(flow.client, public_client, code, verifier_challenge[0]).json()
    replay = exchange(flow.client, public_client, code, verifier_challenge[0])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert _mcp(flow.client, first["access_token"]).status_code == 401
    refreshed = flow.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": public_client["client_id"],
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_pkce_mismatch_is_refused_without_burning_the_code(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    code = flow.authorize(authorize_params(public_client, verifier_challenge[1]))["code"]
    wrong = exchange(flow.client, public_client, code, "x" * 43)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = exchange(flow.client, public_client, code, None)  # type: ignore[arg-type]
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert exchange(flow.client, public_client, code, verifier_challenge[0]).status_code == 200


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"redirect_uri": "http://127.0.0.1:33418/other"}, "invalid_grant"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"client_id": "vsc_someone_else"}, "invalid_client"),
    ],
)
def test_code_exchange_checks_redirect_resource_and_client(
    flow: Flow,
    public_client: dict[str, Any],
    verifier_challenge: tuple[str, str],
    extra: dict[str, str],
    error: str,
) -> None:
    code = flow.authorize(authorize_params(public_client, verifier_challenge[1]))["code"]
    response = exchange(flow.client, public_client, code, verifier_challenge[0], **extra)
    assert response.json()["error"] == error, response.text


def test_code_expires_after_a_minute(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], clock: FrozenClock
) -> None:
    code = flow.authorize(authorize_params(public_client, verifier_challenge[1]))["code"]
    clock.advance(61)
    assert exchange(flow.client, public_client, code, verifier_challenge[0]).json()["error"] == "invalid_grant"


def test_bad_token_requests_get_standard_errors(client: TestClient[Any], public_client: dict[str, Any]) -> None:
    assert (
        client.post("/oauth/token", data={"grant_type": "password", "client_id": public_client["client_id"]}).json()[
            "error"
        ]
        == "unsupported_grant_type"
    )
    assert client.post("/oauth/token", json={"grant_type": "authorization_code"}).json()["error"] == "invalid_request"
    assert (
        client.post(
            "/oauth/token", data={"grant_type": "authorization_code", "client_id": public_client["client_id"]}
        ).json()["error"]
        == "invalid_request"
    )
    assert (
        client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": public_client["client_id"],
                "refresh_token": "nope",
            },
        ).json()["error"]
        == "invalid_grant"
    )


def test_refresh_rotates_and_reuse_revokes_the_grant(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], clock: FrozenClock
) -> None:
    first = _tokens(flow, public_client, verifier_challenge)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": public_client["client_id"],
    }
    second = flow.client.post("/oauth/token", data=data).json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    # A racing twin within the grace window gets the very same pair.
    twin = flow.client.post("/oauth/token", data=data).json()
    assert twin["access_token"] == second["access_token"] and twin["refresh_token"] == second["refresh_token"]
    clock.advance(31)
    reuse = flow.client.post("/oauth/token", data=data)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert _mcp(flow.client, second["access_token"]).status_code == 401
    again = flow.client.post("/oauth/token", data={**data, "refresh_token": second["refresh_token"]})
    assert again.json()["error"] == "invalid_grant"


def test_refresh_after_access_token_expiry(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], clock: FrozenClock
) -> None:
    first = _tokens(flow, public_client, verifier_challenge)
    clock.advance(3601)
    assert _mcp(flow.client, first["access_token"]).status_code == 401
    second = flow.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": public_client["client_id"],
            "scope": "identity",
        },
    ).json()
    assert second["scope"] == "identity"
    assert _mcp(flow.client, second["access_token"]).status_code == 200


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_confidential_clients_authenticate(flow: Flow, verifier_challenge: tuple[str, str], method: str) -> None:
    info = register(flow.client, token_endpoint_auth_method=method)
    code = flow.authorize(authorize_params(info, verifier_challenge[1]))["code"]
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": info["redirect_uris"][0],
        "code_verifier": verifier_challenge[0],
    }
    basic = base64.b64encode(f"{info['client_id']}:{info['client_secret']}".encode()).decode()
    wrong = base64.b64encode(f"{info['client_id']}:nope".encode()).decode()
    if method == "client_secret_basic":
        denied = flow.client.post("/oauth/token", data=body, headers={"Authorization": f"Basic {wrong}"})
        assert denied.status_code == 401 and denied.json()["error"] == "invalid_client"
        ok = flow.client.post("/oauth/token", data=body, headers={"Authorization": f"Basic {basic}"})
    else:
        denied = flow.client.post(
            "/oauth/token", data={**body, "client_id": info["client_id"], "client_secret": "nope"}
        )
        assert denied.json()["error"] == "invalid_client"
        no_secret = flow.client.post("/oauth/token", data={**body, "client_id": info["client_id"]})
        assert no_secret.json()["error"] == "invalid_client"
        ok = flow.client.post(
            "/oauth/token",
            data={**body, "client_id": info["client_id"], "client_secret": info["client_secret"]},
        )
    assert ok.status_code == 200, ok.text


def test_revoking_a_refresh_token_revokes_its_access_token(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    tokens = _tokens(flow, public_client, verifier_challenge)
    response = flow.client.post(
        "/oauth/revoke", json={"token": tokens["refresh_token"], "client_id": public_client["client_id"]}
    )
    assert response.status_code == 200
    assert _mcp(flow.client, tokens["access_token"]).status_code == 401


def test_revoking_an_access_token_and_unknown_tokens(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    tokens = _tokens(flow, public_client, verifier_challenge)
    unknown = flow.client.post("/oauth/revoke", data={"token": "nope", "client_id": public_client["client_id"]})
    assert unknown.status_code == 200
    assert _mcp(flow.client, tokens["access_token"]).status_code == 200
    flow.client.post(
        "/oauth/revoke",
        data={
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": public_client["client_id"],
        },
    )
    assert _mcp(flow.client, tokens["access_token"]).status_code == 401
    assert (
        flow.client.post("/oauth/revoke", data={"client_id": public_client["client_id"]}).json()["error"]
        == "invalid_request"
    )


def test_introspection_requires_client_authentication(
    flow: Flow, verifier_challenge: tuple[str, str], public_client: dict[str, Any]
) -> None:
    public = flow.client.post("/oauth/introspect", data={"token": "x", "client_id": public_client["client_id"]})
    assert public.status_code in (400, 401) and public.json()["error"] == "invalid_client"
    info = register(flow.client, token_endpoint_auth_method="client_secret_post")
    tokens = _tokens(flow, info, verifier_challenge, client_secret=info["client_secret"])
    auth = {"client_id": info["client_id"], "client_secret": info["client_secret"]}
    active = flow.client.post("/oauth/introspect", data={"token": tokens["access_token"], **auth}).json()
    assert active["active"] is True and active["client_id"] == info["client_id"]
    assert active["aud"] == f"{ISSUER}/mcp" and active["scope"] == "identity delegation"
    flow.client.post("/oauth/revoke", data={"token": tokens["refresh_token"], **auth})
    assert flow.client.post("/oauth/introspect", data={"token": tokens["access_token"], **auth}).json() == {
        "active": False
    }


# -- the /mcp challenge --------------------------------------------------------------------------------------
def test_mcp_without_a_token_gets_the_rfc9728_challenge(client: TestClient[Any]) -> None:
    for response in (_mcp(client, None), client.get("/mcp")):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{ISSUER}/.well-known/oauth-protected-resource/mcp"' in challenge
        assert 'scope="identity delegation"' in challenge
        assert "error=" not in challenge


def test_mcp_with_a_bad_token_says_invalid_token(client: TestClient[Any]) -> None:
    response = _mcp(client, "vsat_forged")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_mcp_cors_exposes_the_challenge(client: TestClient[Any]) -> None:
    response = _mcp(client, None, Origin="http://localhost:6274")
    assert "www-authenticate" in response.headers.get("access-control-expose-headers", "").lower()


def test_token_for_another_resource_is_refused(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    tokens = _tokens(flow, public_client, verifier_challenge)
    response = _mcp(flow.client, tokens["access_token"], Host="other.example")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_unpairing_the_connection_stops_its_tokens_at_once(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    tokens = _tokens(flow, public_client, verifier_challenge)
    connections = flow.device.call(flow.client, "GET", "/device/connections").json()["connections"]
    assert len(connections) == 1
    connection_id = connections[0]["connection_id"]
    assert flow.device.call(flow.client, "DELETE", f"/device/connections/{connection_id}").status_code == 200
    assert _mcp(flow.client, tokens["access_token"]).status_code == 401
    refreshed = flow.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": public_client["client_id"],
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


# -- issue 9, finding 5: protocol details ----------------------------------------------------------------------
@pytest.mark.parametrize("resource", ["https://other.example/mcp", f"{ISSUER}/api"])
def test_a_refresh_for_a_foreign_resource_is_invalid_target(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], resource: str
) -> None:
    first = _tokens(flow, public_client, verifier_challenge)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": public_client["client_id"],
    }
    foreign = flow.client.post("/oauth/token", data={**data, "resource": resource})
    assert foreign.status_code == 400, foreign.text
    assert foreign.json()["error"] == "invalid_target"
    # Refused before rotation: the refresh token still works, for its own resource (trailing slash forgiven).
    same = flow.client.post("/oauth/token", data={**data, "resource": f"{ISSUER}/mcp/"})
    assert same.status_code == 200, same.text


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_basic_and_a_body_secret_together_are_refused(
    flow: Flow, verifier_challenge: tuple[str, str], endpoint: str
) -> None:
    info = register(flow.client, token_endpoint_auth_method="client_secret_basic")
    code = flow.authorize(authorize_params(info, verifier_challenge[1]))["code"]
    basic = base64.b64encode(f"{info['client_id']}:{info['client_secret']}".encode()).decode()
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": info["redirect_uris"][0],
        "code_verifier": verifier_challenge[0],
        "token": "vsat_whatever",
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],  # the right secret, twice: still two methods (RFC 6749 §2.3)
    }
    both = flow.client.post(endpoint, data=body, headers={"Authorization": f"Basic {basic}"})
    assert both.status_code == 400, both.text
    assert both.json()["error"] == "invalid_request"
    assert "2.3" in both.json()["error_description"]
    if endpoint == "/oauth/token":  # the code was not spent: one method alone still works
        del body["client_secret"]
        ok = flow.client.post(endpoint, data=body, headers={"Authorization": f"Basic {basic}"})
        assert ok.status_code == 200, ok.text


def test_unknown_scopes_are_dropped_and_the_token_says_what_was_granted(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    params = authorize_params(public_client, verifier_challenge[1], scope="identity claudeai")
    code = flow.authorize(params)["code"]
    response = exchange(flow.client, public_client, code, verifier_challenge[0])
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "identity"
