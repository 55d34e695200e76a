"""JSON-RPC 2.0 parsing with MCP's narrowing, and the exact error each fault earns."""

from __future__ import annotations

import json

import pytest

from vouchsim.server.mcp import jsonrpc
from vouchsim.server.mcp.errors import INVALID_REQUEST, PARSE_ERROR, InvalidRequest, ParseError


def parse(value: object) -> jsonrpc.Message:
    return jsonrpc.parse(json.dumps(value).encode())


def test_a_request_a_notification_and_a_response_are_told_apart() -> None:
    assert parse({"jsonrpc": "2.0", "id": 1, "method": "ping"}) == jsonrpc.Request(id=1, method="ping")
    assert parse({"jsonrpc": "2.0", "id": "a", "method": "tools/list", "params": {"cursor": "x"}}) == jsonrpc.Request(
        id="a", method="tools/list", params={"cursor": "x"}
    )
    assert parse({"jsonrpc": "2.0", "method": "notifications/initialized"}) == jsonrpc.Notification(
        method="notifications/initialized"
    )
    assert parse({"jsonrpc": "2.0", "id": 3, "result": {}}) == jsonrpc.ClientResponse(id=3)
    assert parse({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "no"}}) == jsonrpc.ClientResponse(id=3)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"jsonrpc": "2.0",}', b"\xff\xfe"])
def test_bytes_that_are_not_json_are_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        jsonrpc.parse(body)
    assert caught.value.rpc_code == PARSE_ERROR == -32700
    assert caught.value.status == 400 and caught.value.request_id is None


@pytest.mark.parametrize(
    ("message", "echoed_id"),
    [
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], None),  # a batch
        ("ping", None),
        (42, None),
        ({"id": 1, "method": "ping"}, 1),  # no "jsonrpc"
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 1),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None),  # MCP: ids are never null
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1}, 1),  # neither a method nor a result
        ({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}, 1),
        ({"jsonrpc": "2.0", "result": {}}, None),  # a response without an id
        ({"jsonrpc": "2.0", "id": 1, "method": 7}, 1),
        ({"jsonrpc": "2.0", "id": "x", "method": ""}, "x"),
        ({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": [1, 2]}, 2),
        ({"jsonrpc": "2.0", "method": "notifications/x", "params": "p"}, None),
    ],
)
def test_json_that_is_not_a_message_is_an_invalid_request(message: object, echoed_id: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(message)
    assert caught.value.rpc_code == INVALID_REQUEST == -32600
    assert caught.value.status == 400
    assert caught.value.request_id == echoed_id


def test_replies_are_encoded_as_json_rpc_2() -> None:
    assert json.loads(jsonrpc.encode(jsonrpc.ResultMessage(id=7, result={"ok": True}))) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"ok": True},
    }
    assert json.loads(jsonrpc.encode(jsonrpc.error_message(None, -32700, "Parse error"))) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }
    with_data = jsonrpc.error_message("a", -32000, "Session not found.", {"reason": "not_found"})
    assert json.loads(jsonrpc.encode(with_data))["error"]["data"] == {"reason": "not_found"}
    progress = jsonrpc.NotificationMessage(method="notifications/progress", params={"progressToken": 1})
    assert json.loads(jsonrpc.encode(progress)) == {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": 1},
    }
