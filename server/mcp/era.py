"""Which era a POST to `/mcp` speaks, and the 2026-07-28 validation ladder (basic/versioning, "Backward
Compatibility"; basic/transports/streamable-http, "Request Metadata" and "Server Validation").

A request is **modern** when its `params._meta` carries `io.modelcontextprotocol/protocolVersion` (an `initialize`
stamped so is a 2026 request for a removed method: 404), or when its `MCP-Protocol-Version` header names anything
but a handshake version (except on `initialize`, the handshake itself). Everything else is **legacy**: a 2025
session, as before (a missing header still means 2025-03-26).

A modern request is checked in this order, the first failure answering (the order both official SDKs use):

1. `_meta` is an object with the protocol version (a string) and the client capabilities (an object):
   else 400, -32602.
2. `MCP-Protocol-Version`, `Mcp-Method` and, for `tools/call` and `tasks/*`, `Mcp-Name` are each sent once and
   equal the body (`Mcp-Name` decoded from its Base64 form): else 400, -32020.
3. The version is one this server offers: else 400, -32022 with `supported` and `requested`.
4. The method exists in 2026-07-28 (transport.py): else 404, -32601.
5. A capability the method needs was declared (`tasks/*`: the Tasks extension, server.mcp.tasks): else 400, -32021.

HTTP-free: routes.py hands in the routing headers as `RoutingHeaders`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from vouchsim.server.mcp import jsonrpc
from vouchsim.server.mcp.errors import HeaderMismatch, InvalidEnvelope
from vouchsim.server.mcp.protocol import KNOWN_LEGACY, TASKS_EXTENSION, Versions

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY: Final = "io.modelcontextprotocol/clientInfo"

# The body field each method mirrors into `Mcp-Name` (tools/call, and the Tasks extension's methods,
# TASKS "Streamable HTTP: Routing Headers"). Vouchsim has no prompts or resources.
NAMED_BY: Final = {"tools/call": "name", "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}

_BASE64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_HEADER_SAFE = re.compile(r"^[\x20-\x7e]*$")


@dataclass(frozen=True)
class RoutingHeaders:
    """The request's routing headers as sent (None when absent), and the name of one sent more than once."""

    protocol_version: str | None = None
    method: str | None = None
    name: str | None = None
    repeated: str | None = None


@dataclass(frozen=True)
class Envelope:
    """What a modern request says about itself in `_meta`: everything a call needs besides the bearer grant."""

    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None = None

    @property
    def declares_tasks(self) -> bool:
        extensions = self.client_capabilities.get("extensions")
        return isinstance(extensions, dict) and isinstance(extensions.get(TASKS_EXTENSION), dict)


def _meta(message: jsonrpc.Message) -> object:
    params = getattr(message, "params", None)
    return params.get("_meta") if isinstance(params, dict) else None


def is_modern(message: jsonrpc.Message, headers: RoutingHeaders) -> bool:
    meta = _meta(message)
    if isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta:
        return True  # even `initialize`, which 2026-07-28 removed: 404
    if isinstance(message, jsonrpc.Request) and message.method == "initialize":
        return False  # the handshake, whatever its header says
    version = (headers.protocol_version or "").strip()
    return bool(version) and version not in KNOWN_LEGACY


def decode_header_value(value: str) -> str | None:
    """An `Mcp-Name` value as the body would hold it: the `=?base64?…?=` form decoded (canonical Base64 of UTF-8
    only); None for a value that cannot be a header's (a malformed sentinel, invisible characters)."""
    if not _HEADER_SAFE.fullmatch(value):
        return None
    found = _BASE64_SENTINEL.fullmatch(value)
    if found is None:
        return value
    payload = found.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode() != payload:
            return None
        return decoded.decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def envelope(request: jsonrpc.Request, headers: RoutingHeaders, versions: Versions) -> Envelope:
    """Steps 1 to 3 of the ladder; raises the first failure (its `request_id` is set by the caller)."""
    meta = _meta(request)
    if not isinstance(meta, dict):
        raise InvalidEnvelope(
            f"Invalid params: _meta is missing; a 2026-07-28 request carries {PROTOCOL_VERSION_KEY!r} and "
            f"{CLIENT_CAPABILITIES_KEY!r} in params._meta."
        )
    version = meta.get(PROTOCOL_VERSION_KEY)
    capabilities = meta.get(CLIENT_CAPABILITIES_KEY)
    missing = [
        key
        for key, ok in (
            (PROTOCOL_VERSION_KEY, isinstance(version, str)),
            (CLIENT_CAPABILITIES_KEY, isinstance(capabilities, dict)),
        )
        if not ok
    ]
    if missing:
        raise InvalidEnvelope(f"Invalid params: _meta is missing {' and '.join(repr(key) for key in missing)}.")
    assert isinstance(version, str) and isinstance(capabilities, dict)
    _check_headers(request, headers, version)
    if version not in versions.modern:
        raise versions.refuse(version)
    info = meta.get(CLIENT_INFO_KEY)
    return Envelope(version, capabilities, info if isinstance(info, dict) else None)


def _check_headers(request: jsonrpc.Request, headers: RoutingHeaders, version: str) -> None:
    if headers.repeated is not None:
        raise HeaderMismatch(f"Header mismatch: {headers.repeated} is sent more than once.")
    _same("MCP-Protocol-Version", headers.protocol_version, version)
    _same("Mcp-Method", headers.method, request.method)
    field = NAMED_BY.get(request.method)
    body_value = (request.params or {}).get(field) if field else None
    if isinstance(body_value, str):
        decoded = None if headers.name is None else decode_header_value(headers.name.strip())
        if headers.name is not None and decoded is None:
            raise HeaderMismatch("Header mismatch: the Mcp-Name header value is malformed.")
        _same("Mcp-Name", decoded, body_value)


def _same(header: str, value: str | None, body_value: str) -> None:
    if value is None:
        raise HeaderMismatch(f"Header mismatch: the {header} header is required.")
    if value.strip() != body_value:
        raise HeaderMismatch(
            f"Header mismatch: {header} header value {value.strip()[:100]!r} does not match body value "
            f"{body_value[:100]!r}."
        )
