"""Issue 9, finding 3: bad input of any shape gets a 4xx with a clear error and never a traceback in the log, on
SQLite and on PostgreSQL (server.edge.inputs, and the app's last-resort handler behind it)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.support import Device, Flow, authorize_params, pkce, register

DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.fixture(autouse=True)
def _no_traceback(caplog: pytest.LogCaptureFixture) -> Any:
    """Every test here: nothing logged with a traceback, nothing at error level, while the test ran."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.get_records("call") if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def test_the_log_check_sees_the_apps_log(client: TestClient[Any], caplog: pytest.LogCaptureFixture) -> None:
    client.get("/healthz")
    logging.getLogger("vouchsim").warning("seen")
    assert "seen" in [r.getMessage() for r in caplog.records]


def oauth_error(response: Any, status: int = 400, error: str = "invalid_request") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert response.headers["cache-control"] == "no-store"
    return str(body["error_description"])


def rpc_error(response: Any, code: int, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == code, body
    return str(body["error"]["message"])


# -- deep JSON ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("path", ["/oauth/register", "/oauth/revoke", "/oauth/token", "/device/enrol"])
def test_deep_json_is_refused_with_400(client: TestClient[Any], path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert "nested deeper" in oauth_error(response)


def test_json_just_deep_enough_still_reaches_the_handler(client: TestClient[Any]) -> None:
    nested: Any = "x"
    for _ in range(40):
        nested = {"n": nested}
    response = client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"], "extra": nested})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("body", [DEEP, b"\xff\xfe{}", b'{"jsonrpc":"2.0","id":1,"method":"\xc3("}'])
def test_mcp_answers_unreadable_bodies_with_parse_error(flow: Flow, body: bytes) -> None:
    token = _access_token(flow)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    message = rpc_error(flow.client.post("/mcp", content=body, headers=headers), -32700)
    assert "try again" not in message


def test_mcp_refuses_nul_inside_valid_json(flow: Flow) -> None:
    token = _access_token(flow)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping\u0000", "params": {}}
    assert "NUL" in rpc_error(flow.client.post("/mcp", json=body, headers=headers), -32600)


# -- NUL at the boundary --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"client_name": "Acme\u0000Agent"},
        {"redirect_uris": ["http://127.0.0.1:33418/call\u0000back"]},
        {"client_uri": "https://acme.example/\u0000"},
        {"scope\u0000": "identity"},
    ],
    ids=["client_name", "redirect_uri", "client_uri", "a-name"],
)
def test_a_nul_is_refused_at_registration(client: TestClient[Any], overrides: dict[str, Any]) -> None:
    body = {"client_name": "Acme", "redirect_uris": ["http://127.0.0.1:33418/callback"], **overrides}
    assert "NUL" in oauth_error(client.post("/oauth/register", json=body))


def test_a_nul_is_refused_at_authorize(client: TestClient[Any], public_client: dict[str, Any]) -> None:
    _verifier, challenge = pkce()
    for name in ("client_id", "redirect_uri", "state", "scope"):
        params = authorize_params(public_client, challenge)
        params[name] += "\u0000"
        response = client.get("/oauth/authorize", params=params, follow_redirects=False)
        # A person's browser lands here: the edge answers with a page, as the endpoint's own errors are.
        assert response.status_code == 400, name
        assert response.headers["content-type"].startswith("text/html")
        assert "NUL" in response.text and "invalid_request" in response.text, name


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "authorization_code", "code": "abc\u0000", "client_id": "c", "redirect_uri": "x"},
        {"grant_type": "refresh_token", "refresh_token": "r\u0000", "client_id": "c"},
        {"grant_type": "authorization_code", "code": "abc", "client_id": "c\u0000", "redirect_uri": "x"},
    ],
)
def test_a_nul_is_refused_at_the_token_endpoint(client: TestClient[Any], form: dict[str, str]) -> None:
    assert "NUL" in oauth_error(client.post("/oauth/token", data=form))


@pytest.mark.parametrize("form", [{"token": "t\u0000"}, {"token": "t", "client_id": "\u0000"}])
def test_a_nul_is_refused_at_revocation(client: TestClient[Any], form: dict[str, str]) -> None:
    assert "NUL" in oauth_error(client.post("/oauth/revoke", data=form))


def test_a_nul_in_basic_credentials_is_refused(client: TestClient[Any]) -> None:
    for credentials in (b"client\x00:secret", b"client%00:secret"):
        header = "Basic " + base64.b64encode(credentials).decode()
        response = client.post("/oauth/revoke", data={"token": "t"}, headers={"Authorization": header})
        assert "NUL" in oauth_error(response)


def test_a_nul_in_a_json_token_body_is_refused(client: TestClient[Any]) -> None:
    response = client.post("/oauth/revoke", json={"token": "t\u0000"})
    assert "NUL" in oauth_error(response)


def test_a_nul_in_the_path_or_a_cookie_is_refused(client: TestClient[Any]) -> None:
    assert "NUL" in oauth_error(client.get("/oauth/authorize/pairing/abc%00/status"))
    client.cookies.set("vouchsim_browser", "abc%00")
    assert "NUL" in oauth_error(client.get("/oauth/authorize/pairing/abc/status"))


def test_the_device_api_refuses_a_nul_in_its_own_shape(client: TestClient[Any]) -> None:
    device = Device()
    response = device.call(client, "POST", "/device/enrol", {"public_key": device.public_key, "name": "ph\u0000ne"})
    assert "NUL" in oauth_error(response)


# -- text and size --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/oauth/register", "/oauth/token", "/device/enrol"])
def test_a_body_that_is_not_utf8_is_refused(client: TestClient[Any], path: str) -> None:
    response = client.post(path, content=b'{"client_name": "\xff"}', headers={"Content-Type": "application/json"})
    assert "UTF-8" in oauth_error(response)
    form = client.post(path, content=b"grant_type=%FF", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "UTF-8" in oauth_error(form)


def test_a_lone_surrogate_is_refused(client: TestClient[Any]) -> None:
    body = b'{"client_name": "\\ud800", "redirect_uris": ["http://127.0.0.1:1/cb"]}'
    response = client.post("/oauth/register", content=body, headers={"Content-Type": "application/json"})
    assert "surrogate" in oauth_error(response)


def test_a_body_over_a_mebibyte_is_413(client: TestClient[Any]) -> None:
    response = client.post("/oauth/register", content=b" " * (1024 * 1024 + 1))
    oauth_error(response, 413, "request_too_large")


def test_malformed_json_is_still_answered_by_the_endpoint(client: TestClient[Any]) -> None:
    response = client.post("/oauth/register", content=b"{not json", headers={"Content-Type": "application/json"})
    oauth_error(response, 400, "invalid_client_metadata")


def _access_token(flow: Flow) -> str:
    from server.tests.support import exchange

    info = register(flow.client)
    verifier, challenge = pkce()
    query = flow.authorize(authorize_params(info, challenge))
    response = exchange(flow.client, info, query["code"], verifier)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
