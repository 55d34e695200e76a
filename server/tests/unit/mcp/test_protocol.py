"""Protocol version negotiation (initialize) and the MCP-Protocol-Version header."""

from __future__ import annotations

import pytest

from vouchsim.server.mcp import protocol
from vouchsim.server.mcp.errors import InvalidParams, ProtocolVersionRefused, UnsupportedProtocolVersion


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26"])
def test_a_version_we_speak_is_answered_with_itself(version: str) -> None:
    assert protocol.negotiate(version) == version


@pytest.mark.parametrize("version", ["2024-11-05", "2026-07-28", "", "latest"])
def test_any_other_is_offered_our_latest(version: str) -> None:
    assert protocol.negotiate(version) == protocol.LATEST == "2025-11-25"


def test_the_header_defaults_to_2025_03_26_and_refuses_what_we_do_not_speak() -> None:
    assert protocol.header_version(None) == "2025-03-26"
    assert protocol.header_version("") == "2025-03-26"
    assert protocol.header_version(" 2025-06-18 ") == "2025-06-18"
    with pytest.raises(UnsupportedProtocolVersion) as caught:
        protocol.header_version("2026-07-28")
    assert caught.value.status == 400
    assert caught.value.data == {"supported": list(protocol.SUPPORTED), "requested": "2026-07-28"}


def test_the_initialize_result_declares_tools_without_list_changes() -> None:
    result = protocol.initialize_result("2025-11-25")
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"] == {"name": "vouchsim", "version": protocol.SERVER_VERSION, "title": "Vouchsim"}
    assert "delegation_request" in result["instructions"]
    # `title` arrived with 2025-06-18.
    assert "title" not in protocol.initialize_result("2025-03-26")["serverInfo"]


def test_structured_output_is_for_2025_06_18_on() -> None:
    assert protocol.has_structured_output("2025-11-25")
    assert protocol.has_structured_output("2025-06-18")
    assert not protocol.has_structured_output("2025-03-26")


def test_initialize_params_need_a_protocol_version() -> None:
    params = protocol.initialize_params(
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1", "x": 2}}
    )
    assert params.protocol_version == "2025-06-18"
    assert protocol.client_info(params) == {"name": "c", "version": "1"}
    for bad in (None, {}, {"protocolVersion": 5}, {"protocolVersion": "2025-06-18", "clientInfo": "me"}):
        with pytest.raises(InvalidParams):
            protocol.initialize_params(bad)


def test_the_offered_versions_shape_negotiation() -> None:
    legacy_only = protocol.Versions(("2025-06-18",))
    assert protocol.negotiate("2025-11-25", legacy_only) == "2025-06-18"
    assert protocol.header_version("2025-06-18", legacy_only) == "2025-06-18"
    with pytest.raises(UnsupportedProtocolVersion):
        protocol.header_version(None, legacy_only)  # 2025-03-26 is assumed, and not offered
    modern_only = protocol.Versions(("2026-07-28",))
    with pytest.raises(ProtocolVersionRefused) as caught:
        protocol.negotiate("2025-11-25", modern_only)
    assert caught.value.data == {"supported": ["2026-07-28"], "requested": "2025-11-25"}


def test_the_discover_result() -> None:
    result = protocol.discover_result(protocol.Versions())
    assert result["resultType"] == "complete" and result["supportedVersions"] == ["2026-07-28"]
    assert result["_meta"] == {"io.modelcontextprotocol/serverInfo": protocol.SERVER_INFO}
    assert result["ttlMs"] >= 0 and result["cacheScope"] == "public"


def test_a_modern_result_keeps_its_own_meta() -> None:
    result = protocol.modern_result({"_meta": {"a": 1}, "x": 2}, "task")
    assert result == {"resultType": "task", "x": 2, "_meta": {"a": 1, protocol.SERVER_INFO_KEY: protocol.SERVER_INFO}}
