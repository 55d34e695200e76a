"""MCP protocol versions (basic/versioning) and the results that describe the server: `initialize` for the
2025 versions, `server/discover` for 2026-07-28.

Two eras share `/mcp`:
- **legacy** (2025-11-25, preferred, 2025-06-18 and 2025-03-26): an `initialize` handshake picks the version and
  opens a session. A client asking for another version is offered our newest legacy one (it then decides whether
  to go on). After `initialize` every request carries `MCP-Protocol-Version`; without it the server assumes
  2025-03-26 (basic/transports, "Protocol Version Header"), and a version this server does not speak is refused
  with 400.
- **modern** (2026-07-28): no handshake and no session; every request names its version and the client's
  capabilities in `_meta` (server.mcp.era). `server/discover` (MUST, server/discover) tells what is offered.

Which versions are offered is a setting (`VOUCHSIM_MCP_VERSIONS`), so a client's fallback can be tested against a
modern-only or a legacy-only server: `Versions` is that choice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from vouchsim.server.mcp.errors import InvalidParams, ProtocolVersionRefused, UnsupportedProtocolVersion

MODERN: Final = ("2026-07-28",)
LATEST_MODERN: Final = "2026-07-28"
# The handshake versions this server can speak, newest first; `LATEST` is what `initialize` offers by default.
LEGACY: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST: Final = "2025-11-25"
SUPPORTED: Final = LEGACY
ALL: Final = (*MODERN, *LEGACY)
# Handshake versions a client may name in `MCP-Protocol-Version` (2024-11-05 never sends it, but a header naming it
# is still a legacy request, refused as one).
KNOWN_LEGACY: Final = (*LEGACY, "2024-11-05")
# What a request without `MCP-Protocol-Version` is taken to speak (backwards compatibility).
ASSUMED_WITHOUT_HEADER: Final = "2025-03-26"

# Cache hints (server/utilities/caching): results of `server/discover` change only with a restart and hold nothing
# of the user; `tools/list` is filtered by the token's scopes, so only the same authorization context may reuse it.
DISCOVER_TTL_MS: Final = 3_600_000
TOOLS_TTL_MS: Final = 300_000
TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
SERVER_INFO_KEY: Final = "io.modelcontextprotocol/serverInfo"


@dataclass(frozen=True)
class Versions:
    """The versions this server offers (`VOUCHSIM_MCP_VERSIONS`), newest first."""

    offered: tuple[str, ...] = ALL

    @functools.cached_property  # read on every request
    def modern(self) -> tuple[str, ...]:
        return tuple(version for version in self.offered if version in MODERN)

    @functools.cached_property
    def legacy(self) -> tuple[str, ...]:
        return tuple(version for version in self.offered if version in LEGACY)

    def refuse(self, requested: str) -> ProtocolVersionRefused:
        """The specification's `UnsupportedProtocolVersionError` for `requested`. `supported` names the versions a
        request can use as it is, per request: the modern ones (as `server/discover` does; legacy ones are reached
        through `initialize`), or on a legacy-only server its handshake versions, so a client falls back to them."""
        return ProtocolVersionRefused(
            "Unsupported protocol version",
            data={"supported": list(self.modern or self.offered), "requested": requested[:40]},
        )


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


def negotiate(requested: str, versions: Versions = Versions()) -> str:
    """The version to answer `initialize` with: the client's when we offer it, else our newest legacy one.

    A server offering no legacy version refuses the handshake naming what it offers (basic/versioning: a
    modern-only server SHOULD name its versions in any error to `initialize`)."""
    legacy = versions.legacy
    if not legacy:
        raise versions.refuse(requested)
    return requested if requested in legacy else legacy[0]


def header_version(value: str | None, versions: Versions = Versions()) -> str:
    """The version a legacy request speaks, from its `MCP-Protocol-Version` header."""
    version = value.strip() if value is not None and value.strip() else ASSUMED_WITHOUT_HEADER
    legacy = versions.legacy
    if not legacy:
        raise versions.refuse(version)
    if version not in legacy:
        named = "" if value is not None and value.strip() else " (a request without MCP-Protocol-Version)"
        raise UnsupportedProtocolVersion(
            f"Unsupported protocol version {version[:40]!r}{named}; this server speaks {', '.join(legacy)}.",
            data={"supported": list(legacy), "requested": version[:40]},
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


# -- 2026-07-28 --------------------------------------------------------------------------------------------------
SERVER_INFO: Final = {"name": SERVER_NAME, "title": SERVER_TITLE, "version": SERVER_VERSION}


def modern_result(result: dict[str, Any], result_type: str = "complete") -> dict[str, Any]:
    """A result as 2026-07-28 sends it: `resultType` (MUST, basic/index "ResultType") and the server's identity in
    `_meta` (SHOULD, "Per-response protocol fields"; `serverInfo` left the body in the final revision)."""
    meta = result.get("_meta")
    return {
        "resultType": result_type,
        **result,
        "_meta": {**(meta if isinstance(meta, dict) else {}), SERVER_INFO_KEY: SERVER_INFO},
    }


def discover_result(versions: Versions) -> dict[str, Any]:
    """`server/discover` (MUST): the modern versions offered (legacy ones are reached only through `initialize`),
    what the server can do, and how long a client may keep this answer (`DiscoverResult` is cacheable)."""
    return modern_result(
        {
            "supportedVersions": list(versions.modern),
            "capabilities": {"tools": {"listChanged": False}, "extensions": {TASKS_EXTENSION: {}}},
            "instructions": INSTRUCTIONS,
            "ttlMs": DISCOVER_TTL_MS,
            "cacheScope": "public",
        }
    )
