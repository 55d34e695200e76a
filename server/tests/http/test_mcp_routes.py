"""`/mcp` over HTTP with real tokens: the session lifecycle, every error path of the transport, the bearer
challenges, Origin checks, the tools, and revocation felt at once despite the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.delegation_support import sign
from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.support import Flow, authorize_params, csrf_of, exchange, pkce, redirect_query, register
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

FULL = "identity delegation"
PAYMENT = {"audienceId": "aud_test_payments", "purpose": "Prepare a payment.", "scopes": ["payments.identity"]}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        mcp_session_ttl=600,
        allowed_origins="https://inspector.example",
        allowed_hosts=TEST_HOSTS,
    )


def tokens_for(flow: Flow, info: dict[str, Any], scope: str = FULL) -> dict[str, Any]:
    """Authorize `info` as the flow's user (pairing the first time, session consent after) and exchange the code."""
    verifier, challenge = pkce()
    start = flow.start(authorize_params(info, challenge, scope=scope))
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    if location.endswith("/consent"):
        page = flow.client.get(location)
        done = flow.client.post(location, data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    else:
        done = flow.submit(location, flow.scan_and_approve(location))
    code = redirect_query(done.headers["location"])["code"]
    response = exchange(flow.client, info, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@dataclass
class Agent:
    """An MCP client speaking raw Streamable HTTP with one access token."""

    client: TestClient[Any]
    token: str | None
    session_id: str | None = None
    version: str | None = "2025-11-25"

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.version:
            headers["MCP-Protocol-Version"] = self.version
        headers.update(extra)
        return headers

    def send(self, message: Any, **headers: str) -> Any:
        content = message if isinstance(message, bytes) else json.dumps(message).encode()
        return self.client.post("/mcp", content=content, headers=self.headers(**headers))

    def initialize(self, version: str = "2025-11-25", **headers: str) -> Any:
        params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
        response = self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, **headers)
        if response.status_code == 200:
            self.session_id = response.headers["mcp-session-id"]
            self.version = response.json()["result"]["protocolVersion"]
        return response

    def request(self, method: str, params: dict[str, Any] | None = None, request_id: int | str = 1) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        return self.send(message)

    def call(self, name: str, arguments: dict[str, Any] | None = None, **meta: Any) -> Any:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        if meta:
            params["_meta"] = meta
        return self.request("tools/call", params)

    def result(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(name, arguments)
        assert response.status_code == 200, response.text
        return response.json()["result"]  # type: ignore[no-any-return]


def agent(flow: Flow, info: dict[str, Any] | None = None, scope: str = FULL) -> Agent:
    tokens = tokens_for(flow, info or register(flow.client), scope)
    new = Agent(flow.client, tokens["access_token"])
    assert new.initialize().status_code == 200
    return new


def rpc_error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code, body
    return body  # type: ignore[no-any-return]


def sse_messages(response: Any) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [
        json.loads(block.split("data: ", 1)[1]) for block in response.text.split("\n\n") if block.startswith("event:")
    ]


def approve_on_device(flow: Flow, delegation_id: str) -> None:
    listed = flow.device.call(flow.client, "GET", "/device/delegations").json()["delegations"]
    delegation = next(d for d in listed if d["delegation_id"] == delegation_id)
    path = f"/device/delegations/{delegation_id}/decision"
    decided = flow.device.call(flow.client, "POST", path, sign(flow.device.key, delegation).body())
    assert decided.status_code == 200, decided.text


# -- lifecycle ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-01-01", "2025-11-25"),
    ],
)
def test_initialize_negotiates_the_version_and_opens_a_session(flow: Flow, asked: str, answered: str) -> None:
    tokens = tokens_for(flow, register(flow.client))
    response = Agent(flow.client, tokens["access_token"], version=None).initialize(asked)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    result = response.json()["result"]
    assert result["protocolVersion"] == answered
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "vouchsim" and result["instructions"]
    session_id = response.headers["mcp-session-id"]
    assert len(session_id) >= 32 and all("\x21" <= c <= "\x7e" for c in session_id)


def test_every_initialize_opens_a_new_session(flow: Flow) -> None:
    first = agent(flow)
    again = Agent(flow.client, first.token)
    again.initialize()
    assert again.session_id != first.session_id
    assert first.request("ping").json()["result"] == {} and again.request("ping").json()["result"] == {}


def test_a_message_without_a_session_is_a_400(flow: Flow) -> None:
    tokens = tokens_for(flow, register(flow.client))
    sessionless = Agent(flow.client, tokens["access_token"])
    for message in (
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "server/discover"},
    ):
        body = rpc_error(sessionless.send(message), 400, -32000)
        assert "Mcp-Session-Id" in body["error"]["message"]


@pytest.mark.parametrize("session_id", ["not-a-session", "x" * 500, "spaces inside"])
def test_an_unknown_session_is_a_404_not_found(flow: Flow, session_id: str) -> None:
    known = agent(flow)
    known.session_id = session_id
    body = rpc_error(known.request("tools/list"), 404, -32000)
    assert body["error"]["data"] == {"reason": "not_found"} and body["id"] is None


def test_a_session_serves_only_the_client_that_opened_it(flow: Flow) -> None:
    first = agent(flow)
    second = agent(flow)
    second.session_id = first.session_id
    body = rpc_error(second.request("tools/list"), 404, -32000)
    assert body["error"]["data"]["reason"] == "not_found"


def test_a_session_of_an_earlier_pairing_is_unavailable(flow: Flow) -> None:
    info = register(flow.client)
    first = agent(flow, info)
    connection = flow.device.call(flow.client, "GET", "/device/connections").json()["connections"][0]
    assert (
        flow.device.call(flow.client, "DELETE", f"/device/connections/{connection['connection_id']}").status_code == 200
    )
    paired_again = agent(flow, info)  # the same user and client, through a new connection
    paired_again.session_id = first.session_id
    body = rpc_error(paired_again.request("ping"), 404, -32000)
    assert body["error"]["data"] == {"reason": "unavailable"}


def test_the_protocol_version_header(flow: Flow) -> None:
    mcp = agent(flow)
    assert mcp.request("ping").status_code == 200
    mcp.version = None  # absent: taken as 2025-03-26, which we speak
    assert mcp.request("ping").status_code == 200
    mcp.version = "2024-11-05"  # a handshake version we do not speak: the 2025 answer
    body = rpc_error(mcp.request("ping"), 400, -32000)
    assert "2025-11-25" in body["error"]["message"]
    mcp.version = "2026-07-28"  # no handshake version: a 2026-07-28 request, which needs its _meta first
    body = rpc_error(mcp.request("ping"), 400, -32602)
    assert "_meta" in body["error"]["message"] and body["id"] == 1


def test_notifications_and_responses_are_accepted_without_a_body(flow: Flow) -> None:
    mcp = agent(flow)
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
        {"jsonrpc": "2.0", "id": 5, "result": {}},
        {"jsonrpc": "2.0", "id": 6, "error": {"code": -1, "message": "no"}},
    ):
        response = mcp.send(message)
        assert response.status_code == 202 and response.content == b"", message


def test_delete_ends_the_session(flow: Flow) -> None:
    mcp = agent(flow)
    response = flow.client.delete("/mcp", headers=mcp.headers())
    assert response.status_code == 204 and response.content == b""
    body = rpc_error(mcp.request("tools/list"), 404, -32000)
    assert body["error"]["data"] == {"reason": "not_found"}
    assert flow.client.delete("/mcp", headers=mcp.headers()).status_code == 404
    mcp.session_id = None
    rpc_error(flow.client.delete("/mcp", headers=mcp.headers()), 400, -32000)


def test_an_idle_session_expires_and_use_keeps_it_alive(flow: Flow, clock: FrozenClock) -> None:
    mcp = agent(flow)  # mcp_session_ttl = 600 here
    clock.advance(400)
    assert mcp.request("ping").status_code == 200  # slides the expiry to 400 + 600
    clock.advance(400)
    assert mcp.request("ping").status_code == 200
    clock.advance(601)
    body = rpc_error(mcp.request("ping"), 404, -32000)
    assert body["error"]["data"] == {"reason": "not_found"}


# -- JSON-RPC errors --------------------------------------------------------------------------------------------
def test_ping_and_an_unknown_method(flow: Flow) -> None:
    mcp = agent(flow)
    assert mcp.request("ping", request_id="p-1").json() == {"jsonrpc": "2.0", "id": "p-1", "result": {}}
    body = rpc_error(mcp.request("resources/list", request_id=4), 200, -32601)
    assert body["id"] == 4


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"'])
def test_malformed_json_is_a_parse_error(flow: Flow, content: bytes) -> None:
    mcp = agent(flow)
    body = rpc_error(mcp.send(content), 400, -32700)
    assert body["id"] is None


@pytest.mark.parametrize(
    "message",
    [
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
        "ping",
    ],
)
def test_json_that_is_not_a_request_is_an_invalid_request(flow: Flow, message: Any) -> None:
    rpc_error(agent(flow).send(message), 400, -32600)


def test_a_body_over_one_mebibyte_is_a_413(flow: Flow) -> None:
    mcp = agent(flow)
    padding = "x" * (1024 * 1024)
    message = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"padding": padding}}
    body = rpc_error(mcp.send(message), 413, -32600)
    assert "1048576" in body["error"]["message"]
    assert mcp.request("ping").status_code == 200  # the session is unharmed


def test_unknown_tools_and_bad_arguments_are_invalid_params(flow: Flow) -> None:
    mcp = agent(flow)
    assert "Unknown tool" in rpc_error(mcp.call("nope"), 200, -32602)["error"]["message"]
    rpc_error(mcp.request("tools/call", {"arguments": {}}), 200, -32602)
    body = rpc_error(mcp.call("delegation_request", {**PAYMENT, "scopes": "payments.identity"}), 200, -32602)
    assert "scopes" in body["error"]["message"] and body["id"] == 1
    body = rpc_error(mcp.call("delegation_request", {"purpose": "p", "scopes": ["s"]}), 200, -32602)
    assert "audienceId" in body["error"]["message"]
    rpc_error(mcp.call("identity_get", {"unexpected": 1}), 200, -32602)


# -- authentication -----------------------------------------------------------------------------------------
def test_every_method_needs_a_token(client: TestClient[Any]) -> None:
    anonymous = Agent(client, None)
    for response in (
        anonymous.initialize(),
        anonymous.request("ping"),
        client.get("/mcp"),
        client.delete("/mcp", headers={"Mcp-Session-Id": "x"}),
    ):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and "error=" not in challenge
        assert f'resource_metadata="{ISSUER}/.well-known/oauth-protected-resource/mcp"' in challenge
        assert 'scope="identity delegation"' in challenge
        assert response.json()["error"]["code"] == -32001


def test_a_bad_token_is_invalid_token(client: TestClient[Any]) -> None:
    response = Agent(client, "vsat_forged").initialize()
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"]["data"] == {"error": "invalid_token"}


def test_a_token_for_another_resource_is_refused_even_when_cached(flow: Flow) -> None:
    mcp = agent(flow)  # validated and cached for https://vouch.test/mcp
    response = mcp.send({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Host="other.example")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_get_is_405_once_authenticated(flow: Flow) -> None:
    mcp = agent(flow)
    response = flow.client.get("/mcp", headers=mcp.headers())
    assert response.status_code == 405 and response.headers["allow"] == "POST, DELETE"


def test_the_fast_lane_and_litestars_router_answer_alike(flow: Flow) -> None:
    """`POST /mcp` skips the router (routes.fast_lane); `/mcp/` takes it to the same handler: same answers."""
    mcp = agent(flow)
    messages: list[Any] = [
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "identity_get", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 8, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 9, "method": "nope"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        b"{not json",
    ]
    for message in messages:
        content = message if isinstance(message, bytes) else json.dumps(message).encode()
        answers = [flow.client.post(path, content=content, headers=mcp.headers()) for path in ("/mcp", "/mcp/")]
        fast, routed = ((a.status_code, a.headers.multi_items(), a.content) for a in answers)
        assert fast == routed
    for method in ("GET", "DELETE"):
        answers = [
            flow.client.request(method, path, headers={"Authorization": "Bearer nope"}) for path in ("/mcp", "/mcp/")
        ]
        assert answers[0].status_code == 401 and answers[0].headers.multi_items() == answers[1].headers.multi_items()
    # What only Litestar answers: its 405 for other methods, its automatic OPTIONS.
    response = flow.client.put("/mcp", headers=mcp.headers(), content=b"{}")
    assert response.status_code == 405 and response.headers["allow"] == "POST, OPTIONS, DELETE, GET"
    assert response.json() == {"error": "method_not_allowed", "error_description": "Method Not Allowed"}
    response = flow.client.options("/mcp")
    assert response.status_code == 204 and response.headers["allow"] == "OPTIONS, POST"


def test_the_hot_path_does_not_touch_the_database(flow: Flow) -> None:
    from sqlalchemy import event

    mcp = agent(flow)
    engine = flow.client.app.state.resources.engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            assert mcp.request("ping").status_code == 200
            assert mcp.request("tools/list").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []


def test_calls_with_a_token_mark_its_connection_used(flow: Flow, clock: FrozenClock) -> None:
    def last_used() -> str | None:
        connection = flow.device.call(flow.client, "GET", "/device/connections").json()["connections"][0]
        return connection["last_used_at"]  # type: ignore[no-any-return]

    info = register(flow.client)
    tokens = tokens_for(flow, info)
    assert last_used() is None  # paired, never used yet
    clock.advance(5)
    mcp = Agent(flow.client, tokens["access_token"])
    assert mcp.initialize().status_code == 200
    used = last_used()
    assert used is not None and datetime.fromisoformat(used) == clock.now()


def test_a_revoked_token_stops_working_at_once_despite_the_cache(flow: Flow) -> None:
    info = register(flow.client)
    tokens = tokens_for(flow, info)
    mcp = Agent(flow.client, tokens["access_token"])
    mcp.initialize()
    assert mcp.request("tools/list").status_code == 200  # the token and the session are cached now
    revoked = flow.client.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": info["client_id"]})
    assert revoked.status_code == 200
    response = mcp.request("tools/list")
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


def test_unpairing_stops_the_tokens_and_sessions_of_the_connection_at_once(flow: Flow) -> None:
    mcp = agent(flow)
    assert mcp.request("ping").status_code == 200
    connection = flow.device.call(flow.client, "GET", "/device/connections").json()["connections"][0]
    path = f"/device/connections/{connection['connection_id']}"
    assert flow.device.call(flow.client, "DELETE", path).status_code == 200
    assert mcp.request("ping").status_code == 401


def test_a_refresh_token_revocation_ends_its_access_tokens_at_once(flow: Flow) -> None:
    info = register(flow.client)
    tokens = tokens_for(flow, info)
    mcp = Agent(flow.client, tokens["access_token"])
    mcp.initialize()
    assert mcp.request("ping").status_code == 200
    data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": info["client_id"]}
    assert flow.client.post("/oauth/revoke", data=data).status_code == 200
    assert mcp.request("ping").status_code == 401


# -- Origin -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", ["https://evil.example", "http://vouch.test", "null"])
def test_a_foreign_origin_is_refused(flow: Flow, origin: str) -> None:
    mcp = agent(flow)
    body = rpc_error(mcp.send({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin=origin), 403, -32000)
    assert "origin" in body["error"]["message"].lower()
    assert flow.client.delete("/mcp", headers=mcp.headers(Origin=origin)).status_code == 403
    # Refused before anything else, a token included.
    assert (
        Agent(flow.client, None).send({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin=origin).status_code == 403
    )


@pytest.mark.parametrize(
    "origin", [ISSUER, "http://localhost:6274", "http://127.0.0.1:5173", "https://inspector.example"]
)
def test_our_loopback_and_allowed_origins_are_served(flow: Flow, origin: str) -> None:
    mcp = agent(flow)
    response = mcp.send({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin=origin)
    assert response.status_code == 200, response.text
    # Browser clients can read the session id and the challenges.
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "mcp-session-id" in exposed and "www-authenticate" in exposed
    preflight = flow.client.options(
        "/mcp",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id, mcp-protocol-version",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] in ("*", origin)


# -- tools ----------------------------------------------------------------------------------------------------
def test_tools_are_listed_by_scope(flow: Flow) -> None:
    full = agent(flow)
    tools = full.request("tools/list").json()["result"]["tools"]
    assert [t["name"] for t in tools] == [
        "identity_get",
        "delegation_request",
        "delegation_status",
        "delegation_revoke",
    ]
    for tool in tools:
        assert tool["inputSchema"]["type"] == "object" and tool["outputSchema"]["type"] == "object"
    identity_only = agent(flow, scope="identity")
    assert [t["name"] for t in identity_only.request("tools/list").json()["result"]["tools"]] == ["identity_get"]
    delegation_only = agent(flow, scope="delegation")
    names = [t["name"] for t in delegation_only.request("tools/list").json()["result"]["tools"]]
    assert names == ["delegation_request", "delegation_status", "delegation_revoke"]


def test_a_tool_beyond_the_tokens_scope_gets_one_insufficient_scope_challenge(flow: Flow) -> None:
    mcp = agent(flow, scope="identity")
    response = mcp.call("delegation_request", PAYMENT)
    assert response.status_code == 403
    assert len(response.headers.get_list("www-authenticate")) == 1
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="identity delegation"' in challenge
    assert f'resource_metadata="{ISSUER}/.well-known/oauth-protected-resource/mcp"' in challenge
    body = response.json()
    assert body["id"] == 1 and "delegation" in body["error"]["message"]
    other = agent(flow, scope="delegation")
    challenge = other.call("identity_get").headers["www-authenticate"]
    assert 'scope="delegation identity"' in challenge


def test_identity_get_is_pairwise_stable_per_client_and_different_across_clients(flow: Flow) -> None:
    info = register(flow.client, client_name="First Agent")
    first = agent(flow, info).result("identity_get")["structuredContent"]
    again = agent(flow, info).result("identity_get")["structuredContent"]  # another token of the same client
    other = agent(flow, register(flow.client, client_name="Second Agent")).result("identity_get")["structuredContent"]
    assert first["subject"] == again["subject"] != other["subject"]
    me = flow.device.call(flow.client, "GET", "/device/me").json()
    assert me["user_id"] not in (first["subject"], other["subject"])
    assert first == {
        "subject": first["subject"],
        "clientId": info["client_id"],
        "clientName": "First Agent",
        "scopes": ["identity", "delegation"],
        "issuer": ISSUER,
    }


def test_older_protocol_versions_get_no_output_schema_or_structured_content(flow: Flow) -> None:
    tokens = tokens_for(flow, register(flow.client))
    mcp = Agent(flow.client, tokens["access_token"], version=None)
    mcp.initialize("2025-03-26")
    tools = mcp.request("tools/list").json()["result"]["tools"]
    assert all("outputSchema" not in tool for tool in tools)
    result = mcp.result("identity_get")
    assert "structuredContent" not in result
    assert json.loads(result["content"][0]["text"])["issuer"] == ISSUER


def test_tool_failures_are_results_a_person_understands(flow: Flow) -> None:
    mcp = agent(flow)
    unknown = mcp.result("delegation_request", {**PAYMENT, "audienceId": "aud_nope", "waitForApproval": False})
    assert unknown["isError"] is True and "aud_nope" in unknown["content"][0]["text"]
    refused = mcp.result("delegation_request", {**PAYMENT, "scopes": ["payments.everything"], "waitForApproval": False})
    assert refused["isError"] is True and "payments.everything" in refused["content"][0]["text"]
    missing = mcp.result("delegation_status", {"delegationId": "dlg_nope"})
    assert missing["isError"] is True and "does not exist" in missing["content"][0]["text"]
    assert "structuredContent" not in missing


def test_a_delegation_of_another_client_is_not_found(flow: Flow) -> None:
    first = agent(flow)
    created = first.result("delegation_request", {**PAYMENT, "waitForApproval": False})["structuredContent"]
    second = agent(flow)
    for name in ("delegation_status", "delegation_revoke"):
        result = second.result(name, {"delegationId": created["delegationId"]})
        assert result["isError"] is True


def test_a_waiting_call_streams_progress_when_it_has_a_progress_token(flow: Flow) -> None:
    mcp = agent(flow)
    response = mcp.call("delegation_request", {**PAYMENT, "timeoutSeconds": 0.2}, progressToken="tok-1")
    assert response.status_code == 200
    *progress, last = sse_messages(response)
    assert progress and progress[0]["method"] == "notifications/progress"
    assert progress[0]["params"]["progressToken"] == "tok-1" and progress[0]["params"]["progress"] == 0
    result = last["result"]["structuredContent"]
    assert last["id"] == 1 and result["status"] == "pending" and result["pollIntervalSeconds"] == 5
    assert result["bindingMessage"] in progress[0]["params"]["message"]
    # On the device at once, with the same binding message.
    listed = flow.device.call(flow.client, "GET", "/device/delegations").json()["delegations"]
    assert [(d["delegation_id"], d["binding_message"]) for d in listed] == [
        (result["delegationId"], result["bindingMessage"])
    ]


def test_a_waiting_call_without_a_progress_token_answers_json(flow: Flow) -> None:
    mcp = agent(flow)
    response = mcp.call("delegation_request", {**PAYMENT, "timeoutSeconds": 0.1})
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["structuredContent"]["status"] == "pending"
    plain = mcp.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "delegation_request",
                "arguments": {**PAYMENT, "timeoutSeconds": 0.1},
                "_meta": {"progressToken": 1},
            },
        },
        Accept="application/json",
    )
    assert plain.headers["content-type"].startswith("application/json")


def test_an_approved_delegation_returns_its_token_and_revoking_is_idempotent(flow: Flow) -> None:
    mcp = agent(flow)
    created = mcp.result("delegation_request", {**PAYMENT, "waitForApproval": False})["structuredContent"]
    assert created["status"] == "pending" and "token" not in created
    approve_on_device(flow, created["delegationId"])
    status = mcp.result("delegation_status", {"delegationId": created["delegationId"], "waitForApproval": True})
    approved = status["structuredContent"]
    assert approved["status"] == "approved" and approved["token"].count(".") == 2
    assert approved["tokenExpiresAt"] and "pollIntervalSeconds" not in approved
    for _ in range(2):
        revoked = mcp.result("delegation_revoke", {"delegationId": created["delegationId"]})["structuredContent"]
        assert revoked["status"] == "revoked" and "token" not in revoked
    after = mcp.result("delegation_status", {"delegationId": created["delegationId"]})["structuredContent"]
    assert after["status"] == "revoked" and "token" not in after


def test_withdrawing_a_pending_request_cancels_it(flow: Flow) -> None:
    mcp = agent(flow)
    created = mcp.result("delegation_request", {**PAYMENT, "waitForApproval": False})["structuredContent"]
    for _ in range(2):
        withdrawn = mcp.result("delegation_revoke", {"delegationId": created["delegationId"]})["structuredContent"]
        assert withdrawn["status"] == "cancelled"
