"""The tool definitions: schemas that agree with the checks behind them, the pairwise subject, rendering per
protocol version, and scope filtering."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from vouchsim.server.core.subjects import audience_subject, client_subject
from vouchsim.server.mcp.errors import InvalidParams
from vouchsim.server.mcp.tools import (
    DEFAULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    TOOLS,
    RequestArguments,
    ToolResult,
    tool_named,
    visible_tools,
)

VALID: dict[str, list[dict[str, Any]]] = {
    "identity_get": [{}],
    "delegation_request": [
        {"audienceId": "aud_test_payments", "purpose": "Pay", "scopes": ["payments.identity"]},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "waitForApproval": False, "timeoutSeconds": 0},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "timeoutSeconds": MAX_WAIT_SECONDS},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "timeoutSeconds": 0.25},
    ],
    "delegation_status": [{"delegationId": "dlg_1"}, {"delegationId": "dlg_1", "waitForApproval": True}],
    "delegation_revoke": [{"delegationId": "dlg_1"}],
}
INVALID: dict[str, list[dict[str, Any]]] = {
    "identity_get": [{"extra": 1}],
    "delegation_request": [
        {},
        {"audienceId": "a", "purpose": "p"},
        {"audienceId": "a", "purpose": "p", "scopes": []},
        {"audienceId": "a", "purpose": "", "scopes": ["s"]},
        {"audienceId": 5, "purpose": "p", "scopes": ["s"]},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "timeoutSeconds": MAX_WAIT_SECONDS + 1},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "timeoutSeconds": -1},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "waitForApproval": "yes"},
        {"audienceId": "a", "purpose": "p" * 501, "scopes": ["s"]},
        {"audienceId": "a", "purpose": "p", "scopes": ["s"], "unknown": True},
    ],
    "delegation_status": [{}, {"delegationId": ""}, {"delegationId": "d", "timeoutSeconds": "soon"}],
    "delegation_revoke": [{}, {"delegationId": ["d"]}],
}


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_input_schemas_accept_and_refuse_what_the_tool_does(tool: Any) -> None:
    jsonschema.Draft202012Validator.check_schema(tool.input_schema)
    jsonschema.Draft202012Validator.check_schema(tool.output_schema)
    assert tool.input_schema["type"] == "object" and tool.output_schema["type"] == "object"
    for arguments in VALID[tool.name]:
        jsonschema.validate(arguments, tool.input_schema)
        tool.parse_arguments(arguments)
    for arguments in INVALID[tool.name]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(arguments, tool.input_schema)
        with pytest.raises(InvalidParams) as caught:
            tool.parse_arguments(arguments)
        assert caught.value.rpc_code == -32602
        assert tool.name in caught.value.description


def test_a_bad_argument_is_named_in_the_error() -> None:
    tool = tool_named("delegation_request")
    assert tool is not None
    with pytest.raises(InvalidParams) as caught:
        tool.parse_arguments({"audienceId": 5, "purpose": "p", "scopes": ["s"]})
    assert "audienceId" in caught.value.description and "str" in caught.value.description


def test_defaults_wait_about_45_seconds() -> None:
    tool = tool_named("delegation_request")
    assert tool is not None
    arguments = tool.parse_arguments({"audienceId": "a", "purpose": "p", "scopes": ["s"]})
    assert isinstance(arguments, RequestArguments)
    assert arguments.wait_for_approval and arguments.timeout_seconds == DEFAULT_WAIT_SECONDS == 45
    assert tool.may_wait(arguments)
    no_wait = tool.parse_arguments({"audienceId": "a", "purpose": "p", "scopes": ["s"], "timeoutSeconds": 0})
    assert not tool.may_wait(no_wait)
    status = tool_named("delegation_status")
    assert status is not None and not status.may_wait(status.parse_arguments({"delegationId": "d"}))


def test_missing_arguments_count_as_none() -> None:
    tool = tool_named("identity_get")
    assert tool is not None
    tool.parse_arguments(None)


def test_tools_are_visible_by_scope() -> None:
    assert [t.name for t in visible_tools(("identity",))] == ["identity_get"]
    assert [t.name for t in visible_tools(("delegation",))] == [
        "delegation_request",
        "delegation_status",
        "delegation_revoke",
    ]
    assert len(visible_tools(("identity", "delegation", "offline_access"))) == 4
    assert visible_tools(("offline_access",)) == []


def test_tool_descriptions_follow_the_protocol_version() -> None:
    tool = TOOLS[1]
    modern = tool.describe("2025-11-25")
    assert {"name", "title", "description", "inputSchema", "outputSchema", "annotations"} <= set(modern)
    legacy = tool.describe("2025-03-26")
    assert "outputSchema" not in legacy and "title" not in legacy
    assert legacy["annotations"]["title"] == tool.title


def test_results_carry_structured_content_from_2025_06_18() -> None:
    result = ToolResult({"status": "pending"}, "Waiting.")
    modern = result.render("2025-06-18")
    assert modern["structuredContent"] == {"status": "pending"} and modern["isError"] is False
    assert modern["content"][0] == {"type": "text", "text": '{"status":"pending"}'}
    assert modern["content"][1] == {"type": "text", "text": "Waiting."}
    legacy = result.render("2025-03-26")
    assert "structuredContent" not in legacy and legacy["content"] == modern["content"]
    failed = ToolResult.error("No audience is called 'x'.").render("2025-11-25")
    assert failed == {"content": [{"type": "text", "text": "No audience is called 'x'."}], "isError": True}


def test_the_pairwise_subject_is_stable_per_client_and_unlinkable() -> None:
    key = b"k" * 32
    subject = client_subject(key, "usr_1", "vsc_a")
    assert subject == client_subject(key, "usr_1", "vsc_a")
    assert subject != client_subject(key, "usr_1", "vsc_b")
    assert subject != client_subject(key, "usr_2", "vsc_a")
    assert subject != client_subject(b"j" * 32, "usr_1", "vsc_a")
    assert "usr_1" not in subject and len(subject) == 64
    # The client's subject and the audience's never coincide, even for a client and an audience of the same name.
    assert client_subject(key, "usr_1", "x") != audience_subject(key, "usr_1", "x")


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_input_schemas_are_generated_from_the_argument_structs(tool: Any) -> None:
    """One source: the Struct that checks the arguments is the schema's origin (descriptions included)."""
    import msgspec

    generated = msgspec.json.schema(tool.arguments)["$defs"][tool.arguments.__name__]
    assert tool.input_schema["properties"] == generated.get("properties", {})
    assert tool.input_schema["additionalProperties"] is False
    assert tool.input_schema.get("required", []) == generated.get("required", [])
    for name, prop in tool.input_schema["properties"].items():
        assert prop.get("description") or prop.get("items", {}).get("description"), name


def test_the_request_schema_publishes_its_defaults_and_bounds() -> None:
    schema = tool_named("delegation_request").input_schema  # type: ignore[union-attr]
    assert schema["required"] == ["audienceId", "purpose", "scopes"]
    assert schema["properties"]["timeoutSeconds"]["default"] == DEFAULT_WAIT_SECONDS
    assert schema["properties"]["timeoutSeconds"]["maximum"] == MAX_WAIT_SECONDS
    assert schema["properties"]["waitForApproval"]["default"] is True
    assert schema["properties"]["scopes"]["maxItems"] == 32


@pytest.mark.anyio
async def test_identity_get_answers_from_the_grant_without_a_transaction() -> None:
    """The hot path of /mcp: the client's name travels in the (cached) grant, so identity_get touches no database."""
    from contextlib import AbstractAsyncContextManager
    from datetime import UTC, datetime
    from typing import cast

    from vouchsim.server.delegation.service import DelegationService
    from vouchsim.server.mcp.tools import ToolContext
    from vouchsim.server.oauth.bearer import AccessGrant

    def no_transaction() -> AbstractAsyncContextManager[Any]:
        raise AssertionError("identity_get opened a transaction")

    grant = AccessGrant(
        token_id="tok_1",
        client_id="vsc_1",
        user_id="usr_1",
        connection_id="conn_1",
        scopes=("identity",),
        resource="https://vouch.test/mcp",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        client_name="Acme Agent",
    )
    context = ToolContext(
        grant=grant,
        issuer="https://vouch.test",
        hmac_key=b"k" * 32,
        protocol_version="2025-11-25",
        transaction=no_transaction,
        delegations=cast(DelegationService, None),
    )
    tool = tool_named("identity_get")
    assert tool is not None
    result = await tool.run(context, tool.parse_arguments({}))
    assert result.structured["clientName"] == "Acme Agent"
    assert result.structured["subject"] == client_subject(b"k" * 32, "usr_1", "vsc_1")
