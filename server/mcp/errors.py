"""What can go wrong on `/mcp`, each with its JSON-RPC 2.0 error code (§5.1) and the HTTP status the
Streamable HTTP transport answers with. `routes.py` turns them into responses, in one place.

Codes: -32700 parse error, -32600 invalid request, -32601 method not found, -32602 invalid params, -32603
internal error (JSON-RPC 2.0); -32000 for transport failures of the 2025 versions (session, protocol version,
origin), as the MCP SDKs do; -32001 for a refused access token, whose details travel in the `WWW-Authenticate`
challenge. 2026-07-28 defines its own (basic/index, "Error Codes"): -32020 header mismatch, -32021 missing
client capability, -32022 unsupported protocol version, each with 400; a method it does not know is 404.
"""

from __future__ import annotations

from typing import Any

from vouchsim.server.core.errors import VouchsimError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TRANSPORT_ERROR = -32000
UNAUTHORIZED = -32001
REQUEST_CANCELLED = -32800
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022


class McpError(VouchsimError):
    """A JSON-RPC error answer. `status` is the HTTP status (200 when the error is an ordinary reply)."""

    rpc_code = INTERNAL_ERROR
    status = 200

    def __init__(
        self, description: str = "", *, data: dict[str, Any] | None = None, request_id: str | int | None = None
    ) -> None:
        super().__init__(description)
        self.data = data
        # The id of the message this answers, when it could be read.
        self.request_id = request_id


class ParseError(McpError):
    """The body is not valid JSON."""

    rpc_code = PARSE_ERROR
    status = 400


class InvalidRequest(McpError):
    """The body is not a valid JSON-RPC 2.0 message."""

    rpc_code = INVALID_REQUEST
    status = 400


class BodyTooLarge(McpError):
    """The request body is larger than this server accepts."""

    rpc_code = INVALID_REQUEST
    status = 413


class MethodNotFound(McpError):
    """This server does not offer that method."""

    rpc_code = METHOD_NOT_FOUND


class UnknownMethod(MethodNotFound):
    """2026-07-28: a method this server does not implement, or one the revision removed (`ping`,
    `logging/setLevel`, …), is 404 with -32601 (basic/transports/streamable-http, "Protocol Version Header")."""

    status = 404


class InvalidParams(McpError):
    """The method's parameters are not valid."""

    rpc_code = INVALID_PARAMS


class InternalError(McpError):
    """Something went wrong on our side."""

    rpc_code = INTERNAL_ERROR


class RequestCancelled(McpError):
    """The client cancelled this request (`notifications/cancelled`)."""

    rpc_code = REQUEST_CANCELLED


class SessionRequired(McpError):
    """Every message but `initialize` must carry the `Mcp-Session-Id` that `initialize` returned."""

    rpc_code = TRANSPORT_ERROR
    status = 400


class SessionNotFound(McpError):
    """The session ended, expired or never existed (or is not this token's): initialize a new one."""

    rpc_code = TRANSPORT_ERROR
    status = 404

    def __init__(self, description: str = "", *, reason: str = "not_found") -> None:
        super().__init__(description or "Session not found.", data={"reason": reason})
        self.reason = reason


class ScopeRequired(McpError):
    """The access token lacks a scope this call needs: 403 with an `insufficient_scope` challenge (RFC 6750 §3.1)
    whose `scope` names everything the client should ask for (what it holds and what it lacks, MCP
    authorization, "Scope Challenge Handling")."""

    rpc_code = UNAUTHORIZED
    status = 403

    def __init__(self, description: str, *, scope: str, request_id: str | int | None = None) -> None:
        super().__init__(description, request_id=request_id)
        self.scope = scope


class UnsupportedProtocolVersion(McpError):
    """A request of a 2025 session names, in `MCP-Protocol-Version`, a version this server does not speak (the
    2025 SDKs expect -32000 here)."""

    rpc_code = TRANSPORT_ERROR
    status = 400


class InvalidEnvelope(InvalidParams):
    """2026-07-28: `params._meta` lacks the protocol version or the client capabilities (basic/index,
    "Per-request protocol fields")."""

    status = 400


class HeaderMismatch(McpError):
    """2026-07-28 `HeaderMismatch`: a routing header (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) is
    missing, repeated, malformed or disagrees with the body (basic/transports/streamable-http, "Server
    Validation")."""

    rpc_code = HEADER_MISMATCH
    status = 400


class MissingClientCapability(McpError):
    """2026-07-28 `MissingRequiredClientCapabilityError`: the request needs a capability its `_meta` did not
    declare; `data.requiredCapabilities` names it."""

    rpc_code = MISSING_CLIENT_CAPABILITY
    status = 400


class ProtocolVersionRefused(McpError):
    """2026-07-28 `UnsupportedProtocolVersionError`: a version this server does not offer; `data` holds
    `supported` and `requested` (basic/versioning)."""

    rpc_code = UNSUPPORTED_PROTOCOL_VERSION
    status = 400


class ForbiddenOrigin(McpError):
    """Requests from this web origin are not allowed (protection against DNS rebinding)."""

    rpc_code = TRANSPORT_ERROR
    status = 403


class ServiceUnavailable(McpError):
    """The server cannot serve this request right now; try again shortly."""

    rpc_code = INTERNAL_ERROR
    status = 503
