"""`/mcp` speaking 2026-07-28 beside the 2025 versions, over HTTP with real tokens: the era classifier, every step
of the validation ladder with its exact status, JSON-RPC code and id, `server/discover`, `resultType` and
`serverInfo` on every result, the cache hints of `tools/list`, no session ever, and `VOUCHSIM_MCP_VERSIONS`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.http.test_mcp_routes import FULL, PAYMENT, Agent, rpc_error, sse_messages, tokens_for
from server.tests.support import Device, Flow, register
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

MODERN = "2026-07-28"
SERVER_INFO = {"name": "vouchsim", "title": "Vouchsim", "version": "0.1.0"}


def envelope(version: str = MODERN, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": capabilities if capabilities is not None else {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
    }


@dataclass
class Modern:
    """A 2026-07-28 client speaking raw Streamable HTTP: `_meta` and routing headers on every request."""

    client: TestClient[Any]
    token: str
    capabilities: dict[str, Any] = field(default_factory=dict)

    def message(self, method: str, params: dict[str, Any] | None = None, request_id: int | str = 1) -> dict[str, Any]:
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": method,
            "params": {
                **(params or {}),
                "_meta": {**envelope(capabilities=self.capabilities), **(params or {}).get("_meta", {})},
            },
        }

    def headers(self, message: dict[str, Any], **extra: str) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": message.get("method", ""),
        }
        params = message.get("params") or {}
        if message.get("method") == "tools/call" and "name" in params:
            headers["Mcp-Name"] = params["name"]
        if str(message.get("method", "")).startswith("tasks/") and "taskId" in params:
            headers["Mcp-Name"] = params["taskId"]
        headers.update(extra)
        return {name: value for name, value in headers.items() if value != "<absent>"}

    def send(self, message: dict[str, Any], **headers: str) -> Any:
        return self.client.post("/mcp", content=json.dumps(message).encode(), headers=self.headers(message, **headers))

    def request(
        self, method: str, params: dict[str, Any] | None = None, request_id: int | str = 1, **headers: str
    ) -> Any:
        return self.send(self.message(method, params, request_id), **headers)

    def call(self, name: str, arguments: dict[str, Any] | None = None, request_id: int | str = 1, **meta: Any) -> Any:
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        if meta:
            params["_meta"] = meta
        return self.request("tools/call", params, request_id)

    def result(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(name, arguments)
        assert response.status_code == 200, response.text
        return response.json()["result"]  # type: ignore[no-any-return]


def modern(flow: Flow, scope: str = FULL, info: dict[str, Any] | None = None) -> Modern:
    return Modern(flow.client, tokens_for(flow, info or register(flow.client), scope)["access_token"])


def completed(response: Any) -> dict[str, Any]:
    """A 2026-07-28 result: 200 JSON, no session minted, `resultType` and the server's identity in `_meta`."""
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == SERVER_INFO
    return result  # type: ignore[no-any-return]


# -- server/discover ----------------------------------------------------------------------------------------------
def test_server_discover_describes_the_server_without_a_session(flow: Flow) -> None:
    mcp = modern(flow)
    response = mcp.request("server/discover", request_id="discover-1")
    result = completed(response)
    assert response.json()["id"] == "discover-1"
    assert result["supportedVersions"] == [MODERN]
    assert result["capabilities"]["tools"] == {"listChanged": False}
    assert "delegation_request" in result["instructions"]
    assert result["ttlMs"] == 3_600_000 and result["cacheScope"] == "public"
    assert "serverInfo" not in result  # it moved to _meta in the final revision


def test_a_2026_request_is_modern_by_its_meta_even_without_the_header(flow: Flow) -> None:
    """The body's `_meta` makes it modern: a missing header is then a mismatch, not a legacy session error."""
    mcp = modern(flow)
    body = rpc_error(mcp.request("tools/list", request_id=3, **{"MCP-Protocol-Version": "<absent>"}), 400, -32020)
    assert body["id"] == 3 and "MCP-Protocol-Version" in body["error"]["message"]


# -- the ladder, step by step ------------------------------------------------------------------------------------
def test_step_1_meta_missing_is_400_invalid_params(flow: Flow) -> None:
    mcp = modern(flow)
    bare = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
    body = rpc_error(mcp.send(bare), 400, -32602)
    assert body["id"] == 7 and "_meta" in body["error"]["message"]
    half = {
        "jsonrpc": "2.0",
        "id": "h",
        "method": "tools/list",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}},
    }
    body = rpc_error(mcp.send(half), 400, -32602)
    assert body["id"] == "h" and "clientCapabilities" in body["error"]["message"]
    wrong_type = mcp.message("tools/list", request_id=8)
    wrong_type["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = "all"
    assert rpc_error(mcp.send(wrong_type), 400, -32602)["id"] == 8


@pytest.mark.parametrize(
    ("headers", "complaint"),
    [
        ({"MCP-Protocol-Version": "2026-07-29"}, "MCP-Protocol-Version"),
        ({"Mcp-Method": "<absent>"}, "Mcp-Method"),
        ({"Mcp-Method": "tools/list"}, "Mcp-Method"),
        ({"Mcp-Method": "TOOLS/CALL"}, "Mcp-Method"),  # header values are case-sensitive
        ({"Mcp-Name": "<absent>"}, "Mcp-Name"),
        ({"Mcp-Name": "delegation_request"}, "Mcp-Name"),
        ({"Mcp-Name": "=?base64?not base64?="}, "Mcp-Name"),
        ({"Mcp-Name": "=?base64?" + base64.b64encode(b"identity_gex").decode() + "?="}, "Mcp-Name"),
    ],
)
def test_step_2_a_header_that_disagrees_with_the_body_is_400_header_mismatch(
    flow: Flow, headers: dict[str, str], complaint: str
) -> None:
    mcp = modern(flow)
    message = mcp.message("tools/call", {"name": "identity_get", "arguments": {}}, request_id=11)
    body = rpc_error(mcp.send(message, **headers), 400, -32020)
    assert body["id"] == 11 and complaint in body["error"]["message"]


def test_step_2_the_base64_form_of_mcp_name_and_surrounding_whitespace_are_accepted(flow: Flow) -> None:
    mcp = modern(flow)
    message = mcp.message("tools/call", {"name": "identity_get", "arguments": {}})
    encoded = "=?base64?" + base64.b64encode(b"identity_get").decode() + "?="
    completed(mcp.send(message, **{"Mcp-Name": encoded}))
    completed(mcp.send(message, **{"Mcp-Method": " tools/call "}))


def test_step_2_a_routing_header_sent_twice_is_a_mismatch(flow: Flow) -> None:
    mcp = modern(flow)
    message = mcp.message("tools/list", request_id=12)
    headers = [*mcp.headers(message).items(), ("Mcp-Method", "tools/list")]
    response = flow.client.post("/mcp", content=json.dumps(message).encode(), headers=headers)
    body = rpc_error(response, 400, -32020)
    # Sent as two lines it is "sent more than once"; a client that folds them sends "tools/list, tools/list".
    assert body["id"] == 12 and "Mcp-Method" in body["error"]["message"]


def test_step_2_comes_before_step_3(flow: Flow) -> None:
    """A client that disagrees with itself is told so, not that its version is unsupported."""
    mcp = modern(flow)
    message = mcp.message("tools/list", request_id=13)
    message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "1900-01-01"
    assert rpc_error(mcp.send(message), 400, -32020)["id"] == 13


def test_step_3_an_unsupported_version_is_400_naming_supported_and_requested(flow: Flow) -> None:
    mcp = modern(flow)
    message = mcp.message("server/discover", request_id=14)
    message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "1900-01-01"
    body = rpc_error(mcp.send(message, **{"MCP-Protocol-Version": "1900-01-01"}), 400, -32022)
    assert body["id"] == 14
    # The versions usable per request, as server/discover lists them; 2025 ones are reached through initialize.
    assert body["error"]["data"] == {"supported": [MODERN], "requested": "1900-01-01"}


@pytest.mark.parametrize(
    "method",
    [
        "ping",
        "logging/setLevel",
        "subscriptions/listen",
        "resources/subscribe",
        "resources/list",
        "prompts/list",
        "nope",
    ],
)
def test_step_4_a_method_removed_or_unknown_in_2026_is_404_method_not_found(flow: Flow, method: str) -> None:
    mcp = modern(flow)
    body = rpc_error(mcp.request(method, request_id=15), 404, -32601)
    assert body["id"] == 15


def test_handler_errors_stay_200_errors(flow: Flow) -> None:
    mcp = modern(flow)
    body = rpc_error(mcp.call("nope", request_id=16), 200, -32602)
    assert body["id"] == 16 and "Unknown tool" in body["error"]["message"]
    body = rpc_error(mcp.call("delegation_request", {**PAYMENT, "scopes": "x"}, request_id=17), 200, -32602)
    assert body["id"] == 17


# -- results ------------------------------------------------------------------------------------------------------
def test_tools_list_is_cacheable_privately_in_a_fixed_order(flow: Flow) -> None:
    mcp = modern(flow)
    result = completed(mcp.request("tools/list"))
    assert result["ttlMs"] == 300_000 and result["cacheScope"] == "private"
    names = [tool["name"] for tool in result["tools"]]
    assert names == ["identity_get", "delegation_request", "delegation_status", "delegation_revoke"]
    assert all("outputSchema" in tool and "title" in tool for tool in result["tools"])
    assert completed(mcp.request("tools/list", request_id=2))["tools"] == result["tools"]
    identity_only = modern(flow, scope="identity")
    assert [t["name"] for t in completed(identity_only.request("tools/list"))["tools"]] == ["identity_get"]


def test_tools_call_results_carry_result_type_server_info_and_structured_content(flow: Flow) -> None:
    info = register(flow.client, client_name="Modern Agent")
    mcp = modern(flow, info=info)
    result = completed(mcp.call("identity_get"))
    assert result["isError"] is False
    assert result["structuredContent"]["clientId"] == info["client_id"]
    assert result["structuredContent"]["issuer"] == ISSUER
    failure = completed(mcp.call("delegation_status", {"delegationId": "dlg_nope"}))
    assert failure["isError"] is True


def test_a_waiting_call_streams_progress_then_a_modern_result(flow: Flow) -> None:
    mcp = modern(flow)
    response = mcp.call("delegation_request", {**PAYMENT, "timeoutSeconds": 0.2}, progressToken="p-1")
    assert response.status_code == 200 and "mcp-session-id" not in response.headers
    *progress, last = sse_messages(response)
    assert progress and progress[0]["params"]["progressToken"] == "p-1"
    assert last["result"]["resultType"] == "complete"
    assert last["result"]["_meta"]["io.modelcontextprotocol/serverInfo"] == SERVER_INFO
    assert last["result"]["structuredContent"]["status"] == "pending"


def test_a_tool_beyond_the_scope_is_still_a_403_challenge(flow: Flow) -> None:
    mcp = modern(flow, scope="identity")
    response = mcp.call("delegation_request", PAYMENT, request_id=21)
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["id"] == 21


# -- no session, ever ---------------------------------------------------------------------------------------------
def test_a_session_id_is_ignored_and_none_is_minted(flow: Flow) -> None:
    mcp = modern(flow)
    response = mcp.request("tools/list", **{"Mcp-Session-Id": "not-a-session", "Last-Event-ID": "5"})
    completed(response)


def test_modern_notifications_are_accepted(flow: Flow) -> None:
    mcp = modern(flow)
    notification = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"_meta": envelope()}}
    response = flow.client.post("/mcp", content=json.dumps(notification).encode(), headers=mcp.headers(notification))
    assert response.status_code == 202 and response.content == b""


def test_get_and_delete_with_the_2026_header_are_405(flow: Flow) -> None:
    mcp = modern(flow)
    headers = mcp.headers({"method": ""}, **{"Mcp-Method": "<absent>"})
    for response in (flow.client.get("/mcp", headers=headers), flow.client.delete("/mcp", headers=headers)):
        assert response.status_code == 405 and response.headers["allow"] == "POST, DELETE"
        assert response.json()["error"]["code"] == -32600
    # The 2025 era is unharmed: a session still ends with DELETE.
    legacy = Agent(flow.client, mcp.token)
    legacy.initialize()
    assert flow.client.delete("/mcp", headers=legacy.headers()).status_code == 204


def test_the_modern_hot_path_does_not_touch_the_database(flow: Flow) -> None:
    from sqlalchemy import event

    mcp = modern(flow)
    completed(mcp.request("tools/list"))  # the token is validated and cached now
    engine = flow.client.app.state.resources.engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for index in range(3):
            completed(mcp.request("tools/list", request_id=index))
            completed(mcp.request("server/discover", request_id=index))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []


def test_both_eras_serve_one_token_side_by_side(flow: Flow) -> None:
    mcp = modern(flow)
    legacy = Agent(flow.client, mcp.token)
    assert legacy.initialize().status_code == 200
    assert legacy.request("ping").json()["result"] == {}
    completed(mcp.request("tools/list"))
    assert "resultType" not in legacy.request("tools/list").json()["result"]


# -- VOUCHSIM_MCP_VERSIONS ------------------------------------------------------------------------------------------
@pytest.fixture
def app_with(database_url: str, clock: FrozenClock) -> Iterator[Any]:
    clients: list[TestClient[Any]] = []

    def make(versions: str) -> Flow:
        client = TestClient(
            create_app(
                Settings(database_url=database_url, mcp_versions=versions, allowed_hosts=TEST_HOSTS), clock=clock
            ),
            base_url=ISSUER,
        )
        client.__enter__()
        clients.append(client)
        device = Device(clock=clock)
        device.enrol(client)
        return Flow(client, device)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_a_modern_only_server_refuses_the_handshake_naming_its_versions(app_with: Any) -> None:
    flow = app_with("2026-07-28")
    tokens = tokens_for(flow, register(flow.client))
    legacy = Agent(flow.client, tokens["access_token"], version=None)
    body = rpc_error(legacy.initialize("2025-11-25"), 400, -32022)
    assert body["id"] == 0 and body["error"]["data"] == {"supported": ["2026-07-28"], "requested": "2025-11-25"}
    body = rpc_error(legacy.request("tools/list", request_id=4), 400, -32022)
    assert body["id"] == 4 and body["error"]["data"]["requested"] == "2025-03-26"
    mcp = Modern(flow.client, tokens["access_token"])
    assert completed(mcp.request("server/discover"))["supportedVersions"] == ["2026-07-28"]
    response = flow.client.get("/mcp", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_a_legacy_only_server_refuses_2026_with_a_modern_error_the_sdks_fall_back_from(app_with: Any) -> None:
    flow = app_with("2025-11-25,2025-06-18")
    tokens = tokens_for(flow, register(flow.client))
    mcp = Modern(flow.client, tokens["access_token"])
    body = rpc_error(mcp.request("server/discover", request_id=5), 400, -32022)
    assert body["id"] == 5 and body["error"]["data"] == {"supported": ["2025-11-25", "2025-06-18"], "requested": MODERN}
    legacy = Agent(flow.client, tokens["access_token"], version=None)
    assert legacy.initialize("2025-03-26").json()["result"]["protocolVersion"] == "2025-11-25"
    assert legacy.request("ping").status_code == 200
    legacy.version = "2025-03-26"
    body = rpc_error(legacy.request("ping"), 400, -32000)
    assert body["error"]["data"]["supported"] == ["2025-11-25", "2025-06-18"]


@pytest.mark.parametrize("versions", ["", "2026-07-28,2024-11-05", "latest"])
def test_the_setting_refuses_versions_it_cannot_offer(versions: str) -> None:
    with pytest.raises(ValueError, match="mcp_versions"):
        Settings(mcp_versions=versions)
