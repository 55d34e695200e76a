"""Issue 9, findings 6, 7 and 8 over HTTP: rate limits (429 + Retry-After, per IP and per token, emptied by the
testbed's reset), the host guard against DNS rebinding with a derived issuer, and CORS under the Origin rule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import TEST_HOSTS
from server.tests.support import Flow, authorize_params, csrf_of, exchange, pkce, register
from server.tests.testbed_support import AUTH, TOKEN
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.edge.inputs import MAX_BODY
from vouchsim.server.settings import Settings

LOOPBACK = "http://127.0.0.1:8741"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        allowed_hosts=TEST_HOSTS,
        allowed_origins="https://inspector.example",
        rate_limit_registrations=3,
        rate_limit_pairings=3,
        rate_limit_pairing_codes=3,
        rate_limit_mcp=3,
        rate_limit_window=3600,
        testbed=True,
        testbed_token=TOKEN,
    )


def too_many(response: Any) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body: dict[str, Any] = response.json()
    return body


# -- rate limits ----------------------------------------------------------------------------------------------
def test_registrations_from_one_address_are_limited(client: TestClient[Any]) -> None:
    for _ in range(3):
        register(client)
    body = too_many(client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"]}))
    assert body["error"] == "too_many_requests" and "registrations" in body["error_description"]
    # 3 per hour: a token comes back after 1200 s.
    assert int(client.post("/oauth/register", json={}).headers["retry-after"]) == 1200


def test_the_testbed_reset_empties_the_buckets(client: TestClient[Any]) -> None:
    for _ in range(3):
        register(client)
    too_many(client.post("/oauth/register", json={}))
    assert client.post("/testbed/reset", headers=AUTH).status_code == 204
    register(client)


def test_pairings_and_codes_are_limited_per_address(client: TestClient[Any], flow: Flow) -> None:
    info = register(client)
    _verifier, challenge = pkce()
    paths = [flow.pairing_page(authorize_params(info, challenge)) for _ in range(2)]
    request_id = _request_id(client, paths[0])
    page = client.get(paths[0])
    fresh = client.post(
        f"/oauth/authorize/requests/{request_id}/pair", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert fresh.status_code == 303, fresh.text  # the third pairing
    refused = flow.start(authorize_params(info, challenge))  # the page a browser lands on: a page says so
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"].startswith("text/html") and "pairings" in refused.text
    for _ in range(3):
        wrong = client.post(paths[1], data={"csrf": csrf_of(page.text), "code": "000000"}, follow_redirects=False)
        assert 400 <= wrong.status_code < 500 and wrong.status_code != 429, wrong.text
    too_many(client.post(paths[1], data={"csrf": csrf_of(page.text), "code": "000000"}))


def test_mcp_is_limited_per_access_token(flow: Flow, client: TestClient[Any]) -> None:
    info = register(client)
    verifier, challenge = pkce()
    query = flow.authorize(authorize_params(info, challenge))
    first = exchange(client, info, query["code"], verifier).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": info["client_id"]}
    second = client.post("/oauth/token", data=refresh).json()
    tokens = [first["access_token"], second["access_token"]]
    message = {"jsonrpc": "2.0", "id": 1, "method": "ping"}

    def ping(token: str) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        return client.post("/mcp", json=message, headers={**headers, "MCP-Protocol-Version": "2026-07-28"})

    for _ in range(3):
        assert ping(tokens[0]).status_code != 429
    body = too_many(ping(tokens[0]))
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32000
    assert body["error"]["data"]["error"] == "too_many_requests"
    assert ping(tokens[1]).status_code != 429  # another token, another bucket


def test_the_defaults_let_a_suite_through_and_stop_a_burst(database_url: str) -> None:
    defaults = Settings(database_url=database_url)
    assert 100 < defaults.rate_limit_registrations < 300
    assert defaults.rate_limit_pairings >= 100 and defaults.rate_limit_pairing_codes >= 100


def _request_id(client: TestClient[Any], pairing_path: str) -> str:
    page = client.get(pairing_path).text
    marker = "/oauth/authorize/requests/"
    start = page.index(marker) + len(marker)
    return page[start : page.index("/", start)]


# -- the host guard -------------------------------------------------------------------------------------------
@pytest.fixture
def loopback(database_url: str, clock: FrozenClock) -> Iterator[TestClient[Any]]:
    """The defaults: no issuer, listening on 127.0.0.1, no allowed hosts."""
    with TestClient(create_app(Settings(database_url=database_url), clock=clock), base_url=LOOPBACK) as client:
        yield client


@pytest.mark.parametrize("host", ["evil.example:8741", "evil.example", "127.0.0.1.evil.example", "[::2]:8741", "a b"])
def test_a_foreign_host_gets_421_with_the_setting_to_widen_it(loopback: TestClient[Any], host: str) -> None:
    for path in ("/.well-known/oauth-protected-resource/mcp", "/oauth/register", "/device/enrol"):
        response = loopback.get(path, headers={"Host": host, "Origin": f"http://{host}"})
        assert response.status_code == 421, response.text
        assert "VOUCHSIM_ALLOWED_HOSTS" in response.json()["error_description"]
    mcp = loopback.post("/mcp", json={}, headers={"Host": host, "Origin": f"http://{host}"})
    assert mcp.status_code == 421 and mcp.json()["error"]["code"] == -32600


@pytest.mark.parametrize("host", ["127.0.0.1:8741", "localhost:8741", "localhost", "app.localhost:9", "[::1]:8741"])
def test_loopback_names_are_served(loopback: TestClient[Any], host: str) -> None:
    response = loopback.get("/.well-known/oauth-protected-resource/mcp", headers={"Host": host})
    assert response.status_code == 200, response.text
    assert response.json()["resource"] == f"http://{host}/mcp"


def test_allowed_hosts_and_a_fixed_issuer_widen_the_guard(database_url: str, clock: FrozenClock) -> None:
    wide = Settings(database_url=database_url, allowed_hosts="vouch.test,other.test:8443")
    with TestClient(create_app(wide, clock=clock), base_url=LOOPBACK) as client:
        assert client.get("/healthz", headers={"Host": "vouch.test:1"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "other.test:8443"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "other.test:8444"}).status_code == 421
    fixed = Settings(database_url=database_url, issuer="https://vouch.example")
    with TestClient(create_app(fixed, clock=clock), base_url=LOOPBACK) as client:
        answer = client.get("/.well-known/oauth-protected-resource/mcp", headers={"Host": "evil.example"})
        assert answer.status_code == 200 and answer.json()["resource"] == "https://vouch.example/mcp"
    public = Settings(database_url=database_url, host="0.0.0.0")
    with TestClient(create_app(public, clock=clock), base_url=LOOPBACK) as client:
        assert client.get("/healthz", headers={"Host": "vouch.example"}).status_code == 200


# -- CORS -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/mcp", "/oauth/token", "/.well-known/oauth-protected-resource/mcp"])
@pytest.mark.parametrize("origin", ["http://localhost:6274", "https://inspector.example", "https://vouch.test"])
def test_cors_echoes_an_allowed_origin_and_exposes_the_mcp_headers(
    client: TestClient[Any], path: str, origin: str
) -> None:
    preflight = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, mcp-method, last-event-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    } <= allowed
    answer = client.post(path, json={}, headers={"Origin": origin})
    assert answer.headers["access-control-allow-origin"] == origin
    assert "origin" in answer.headers["vary"].lower()
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"mcp-session-id", "mcp-protocol-version", "www-authenticate"} <= exposed


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://vouch.test"])
def test_cors_never_answers_a_foreign_origin(client: TestClient[Any], origin: str) -> None:
    preflight = client.options("/mcp", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    for path in ("/mcp", "/.well-known/oauth-authorization-server"):
        answer = client.get(path, headers={"Origin": origin})
        assert "access-control-allow-origin" not in answer.headers, path


# -- the OpenAPI document names the edge's answers ------------------------------------------------------------
def test_every_operation_documents_the_answers_the_edge_gives_it(client: TestClient[Any]) -> None:
    """Each operation of `/schema/openapi.json` (the testbed's included) is sent what each edge check refuses; the
    answer must be one the operation documents, in the media type documented. A 429 is documented exactly where
    requests beyond the limit (3 here) meet one."""
    document = client.get("/schema/openapi.json").json()
    assert "'421'" in client.get("/schema/openapi.yaml").text  # the YAML document is the same one
    operations = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) > 20
    for method, path, operation in operations:
        url = re.sub(r"\{[^}/]+\}", "x", path)
        documented: dict[str, Any] = operation["responses"]
        refusals = {
            421: client.request(method, url, headers={"Host": "evil.example"}),  # the host guard: before the limits
            400: client.request(method, f"{url}?q=%00"),
        }
        if method not in ("GET", "HEAD", "OPTIONS"):
            refusals[413] = client.request(method, url, content=b"x" * (MAX_BODY + 1))
        last = [client.request(method, url) for _ in range(4)][-1]  # with the two above, past any limit here
        if last.status_code == 429:
            refusals[429] = last
        assert (429 in refusals) == ("429" in documented), (method, path, last.status_code)
        for status, answer in refusals.items():
            assert answer.status_code == status, (method, path, answer.status_code, answer.text[:200])
            assert str(status) in documented, (method, path, status)
            media_type = answer.headers["content-type"].split(";")[0]
            assert media_type in documented[str(status)]["content"], (method, path, status, media_type)
        if 429 in refusals:
            assert "Retry-After" in documented["429"]["headers"] and refusals[429].headers["retry-after"]
