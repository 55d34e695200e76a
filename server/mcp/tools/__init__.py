"""The MCP tools (server/tools): the framework (`framework`), one module per family (`identity`, `delegation`),
and here the registry, in the order `tools/list` shows them (deterministic, as server/tools asks).

A tool is listed, and may be called, only when the token holds its scope (`identity` → `identity_get`,
`delegation` → the rest).
"""

from __future__ import annotations

from vouchsim.server.mcp.tools.delegation import (
    DEFAULT_WAIT_SECONDS,
    DELEGATION_REQUEST,
    DELEGATION_REVOKE,
    DELEGATION_STATUS,
    MAX_WAIT_SECONDS,
    POLL_INTERVAL_SECONDS,
    RequestArguments,
)
from vouchsim.server.mcp.tools.framework import Progress, Tool, ToolContext, ToolResult
from vouchsim.server.mcp.tools.identity import IDENTITY_GET

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "MAX_WAIT_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "TOOLS",
    "Progress",
    "RequestArguments",
    "Tool",
    "ToolContext",
    "ToolResult",
    "tool_named",
    "visible_tools",
]

TOOLS: tuple[Tool, ...] = (IDENTITY_GET, DELEGATION_REQUEST, DELEGATION_STATUS, DELEGATION_REVOKE)

_BY_NAME = {tool.name: tool for tool in TOOLS}


def tool_named(name: str) -> Tool | None:
    return _BY_NAME.get(name)


def visible_tools(granted: tuple[str, ...]) -> list[Tool]:
    """The tools a token with `granted` scopes may see and call."""
    return [tool for tool in TOOLS if tool.scope in granted]
