"""MCP lifecycle (basic/lifecycle): protocol version negotiation and the `initialize` result.

Spoken: 2025-11-25 (preferred), 2025-06-18 and 2025-03-26. A client asking for another version is offered our
latest (the client then decides whether to go on). After `initialize` every request carries
`MCP-Protocol-Version`; without it the server assumes 2025-03-26 (basic/transports, "Protocol Version Header"),
and a version this server does not speak is refused with 400.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from vouchsim.server.mcp.errors import InvalidParams, UnsupportedProtocolVersion

LATEST: Final = "2025-11-25"
SUPPORTED: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
# What a request without `MCP-Protocol-Version` is taken to speak (backwards compatibility).
ASSUMED_WITHOUT_HEADER: Final = "2025-03-26"

SERVER_NAME = "vouchsim"
SERVER_TITLE = "Vouchsim"
SERVER_VERSION = "0.1.0"

INSTRUCTIONS = (
    "Vouchsim acts for the signed-in user through their trusted device. "
    "identity_get tells who the user is for this application (a pairwise subject). "
    "To act towards a service (an audience), call delegation_request with the audience id, a purpose the user "
    "will read and the scopes needed; the user approves or denies it on their trusted device, which shows the "
    "same binding message as the result. The call waits for the decision for a while; if it comes back "
    "pending, call delegation_status with waitForApproval until it is decided. When approved, the result holds "
    "a delegation token to present to that audience. delegation_revoke withdraws a request or revokes a token."
)


def negotiate(requested: str) -> str:
    """The version to answer `initialize` with: the client's when we speak it, else our latest."""
    return requested if requested in SUPPORTED else LATEST


def header_version(value: str | None) -> str:
    """The version a request speaks, from its `MCP-Protocol-Version` header."""
    if value is None or not value.strip():
        return ASSUMED_WITHOUT_HEADER
    version = value.strip()
    if version not in SUPPORTED:
        raise UnsupportedProtocolVersion(
            f"Unsupported protocol version {version[:40]!r}; this server speaks {', '.join(SUPPORTED)}.",
            data={"supported": list(SUPPORTED), "requested": version[:40]},
        )
    return version


def has_structured_output(version: str) -> bool:
    """`outputSchema` and `structuredContent` arrived with 2025-06-18."""
    return version != "2025-03-26"


class InitializeParams(msgspec.Struct, frozen=True, rename="camel"):
    protocol_version: str
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    client_info: dict[str, Any] = msgspec.field(default_factory=dict)


def initialize_params(params: dict[str, Any] | None) -> InitializeParams:
    try:
        return msgspec.convert(params or {}, InitializeParams)
    except msgspec.ValidationError as error:
        raise InvalidParams(f"Invalid initialize params: {error}.") from None


def client_info(params: InitializeParams) -> dict[str, Any]:
    """What is kept of `clientInfo` (name and version, bounded), for the session record."""
    kept: dict[str, Any] = {}
    for key in ("name", "title", "version"):
        value = params.client_info.get(key)
        if isinstance(value, str):
            kept[key] = value[:200]
    return kept


def initialize_result(version: str) -> dict[str, Any]:
    server_info: dict[str, Any] = {"name": SERVER_NAME, "version": SERVER_VERSION}
    if version != "2025-03-26":
        server_info["title"] = SERVER_TITLE
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": server_info,
        "instructions": INSTRUCTIONS,
    }
