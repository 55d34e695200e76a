"""The era classifier and the 2026-07-28 ladder, without HTTP."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from vouchsim.server.mcp import era, jsonrpc
from vouchsim.server.mcp.era import RoutingHeaders
from vouchsim.server.mcp.errors import HeaderMismatch, InvalidEnvelope, ProtocolVersionRefused
from vouchsim.server.mcp.protocol import Versions

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = RoutingHeaders(protocol_version="2026-07-28", method="tools/call", name="identity_get")


def request(method: str = "tools/call", **params: Any) -> jsonrpc.Request:
    return jsonrpc.Request(id=1, method=method, params=params or None)


@pytest.mark.parametrize(
    ("message", "header", "modern"),
    [
        (request("initialize", _meta=META), "2026-07-28", True),  # stamped as 2026: a removed method, 404
        (request("initialize"), "2026-07-28", False),  # the handshake, whatever its header says
        (request("tools/list", _meta=META), None, True),  # the body's _meta decides
        (request("tools/list"), "2026-07-28", True),  # a version of no handshake
        (request("tools/list"), "1900-01-01", True),  # so it gets the modern -32022, not -32000
        (request("tools/list"), "2025-11-25", False),
        (request("tools/list"), "2024-11-05", False),
        (request("tools/list"), " ", False),
        (request("tools/list", _meta={"progressToken": 1}), None, False),  # a bare _meta is not evidence
        (jsonrpc.Notification(method="notifications/initialized"), None, False),
    ],
)
def test_the_era_of_a_request(message: jsonrpc.Message, header: str | None, modern: bool) -> None:
    assert era.is_modern(message, RoutingHeaders(protocol_version=header)) is modern


def test_a_valid_envelope_gives_what_the_call_needs() -> None:
    capabilities = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
    meta = {**META, "io.modelcontextprotocol/clientCapabilities": capabilities}
    found = era.envelope(request(name="identity_get", _meta=meta), HEADERS, Versions())
    assert found.protocol_version == "2026-07-28" and found.declares_tasks and found.client_info is None
    assert not era.envelope(request(name="identity_get", _meta=META), HEADERS, Versions()).declares_tasks


@pytest.mark.parametrize(
    "meta",
    [
        None,
        "x",
        {},
        {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
        {**META, "io.modelcontextprotocol/protocolVersion": 5},
    ],
)
def test_step_1(meta: object) -> None:
    params = {} if meta is None else {"_meta": meta}
    with pytest.raises(InvalidEnvelope) as caught:
        era.envelope(request(name="identity_get", **params), HEADERS, Versions())
    assert caught.value.status == 400 and caught.value.rpc_code == -32602


def test_step_3_names_every_offered_version() -> None:
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "2027-01-01"}
    headers = RoutingHeaders(protocol_version="2027-01-01", method="tools/list")
    with pytest.raises(ProtocolVersionRefused) as caught:
        era.envelope(request("tools/list", _meta=meta), headers, Versions(("2026-07-28", "2025-11-25")))
    assert caught.value.status == 400 and caught.value.rpc_code == -32022
    # The versions a request can use as it is (server/discover's list); 2025 ones are reached by initialize.
    assert caught.value.data == {"supported": ["2026-07-28"], "requested": "2027-01-01"}
    with pytest.raises(ProtocolVersionRefused):
        era.envelope(
            request("tools/list", _meta=META), RoutingHeaders("2026-07-28", "tools/list"), Versions(("2025-11-25",))
        )


def test_tasks_are_named_by_their_task_id() -> None:
    call = request("tasks/get", taskId="vtk_1", _meta=META)
    era.envelope(call, RoutingHeaders("2026-07-28", "tasks/get", "vtk_1"), Versions())
    with pytest.raises(HeaderMismatch):
        era.envelope(call, RoutingHeaders("2026-07-28", "tasks/get", "vtk_2"), Versions())
    with pytest.raises(HeaderMismatch):
        era.envelope(call, RoutingHeaders("2026-07-28", "tasks/get"), Versions())


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("identity_get", "identity_get"),
        (b64("héllo wörld"), "héllo wörld"),
        (b64("=?base64?literal?="), "=?base64?literal?="),
        ("=?base64?***?=", None),
        ("=?base64?aWQ=x?=", None),
        ("=?base64?aWR=?=", None),  # not canonical
        ("tab\there", None),
        ("=?BASE64?aWQ=?=", "=?BASE64?aWQ=?="),  # the markers are case-sensitive: a plain value
    ],
)
def test_mcp_name_values(value: str, decoded: str | None) -> None:
    assert era.decode_header_value(value) == decoded
