"""`/mcp` over HTTP: the only module of `server.mcp` that knows Litestar.

`/mcp` is one plain ASGI handler (Litestar's `@asgi` route): no `Request`, signature model, dependency or
`Response` is built per request. The headers are read in one pass, the body straight from `receive`, and the
answer is two ASGI messages, byte for byte what Litestar's handlers answered before (the e2e wire tests check).
The plain case (`POST`, `GET` or `DELETE` at exactly `/mcp`) reaches it without Litestar's router (`fast_lane`);
everything else (`/mcp/`, other methods, a `Host` the router refuses) is routed by Litestar as before.

Every request is checked in the same order: its `Origin` (403 for a foreign web origin, against DNS
rebinding), its bearer token (401 with the RFC 9728 challenge), then its body (413 over 1 MiB). Errors are
translated here, once: a JSON-RPC error object with the HTTP status of `server.mcp.errors`; `WWW-Authenticate`
for a refused token (401) or a missing scope (403, `insufficient_scope`). Nothing on `/mcp` answers 500: a
failure of ours inside a call is a JSON-RPC -32603 (transport.py), one before it a 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from litestar import asgi
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, MethodNotAllowedException
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from vouchsim.server.core.issuer import derive_issuer
from vouchsim.server.http.lanes import routable_host
from vouchsim.server.mcp import jsonrpc
from vouchsim.server.mcp.errors import (
    UNAUTHORIZED,
    BodyTooLarge,
    InvalidRequest,
    McpError,
    ScopeRequired,
    ServiceUnavailable,
)
from vouchsim.server.mcp.transport import Incoming, McpServer, Outcome, Reply, accepts_event_stream
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.bearer import BearerError, InsufficientScope, challenge

log = logging.getLogger("vouchsim.mcp")

MAX_BODY = 1024 * 1024

# What the Litestar route answered for the methods `/mcp` does not serve (its router's 405, its automatic OPTIONS).
_ALLOWED_BY_ROUTER: Final = "POST, OPTIONS, DELETE, GET"
_OPTIONS_ALLOW: Final = [(b"allow", b"OPTIONS, POST")]

_NO_STORE: Final = (b"cache-control", b"no-store")
_JSON: Final = (b"content-type", b"application/json")

# The request headers `/mcp` reads; the first of each is used, as a multi-dict's `get` would.
_READ: Final = frozenset(
    {
        b"host",
        b"x-forwarded-proto",
        b"origin",
        b"authorization",
        b"accept",
        b"mcp-session-id",
        b"mcp-protocol-version",
        b"mcp-method",
        b"mcp-name",
    }
)
# A routing header sent twice cannot be trusted (a proxy may read the first, we the last).
_ROUTING_HEADERS: Final = frozenset({b"mcp-protocol-version", b"mcp-method", b"mcp-name"})


class _Headers:
    """The headers `/mcp` reads, from one pass over the raw list, and the routing header sent twice (if any)."""

    __slots__ = ("repeated", "values")

    def __init__(self, scope: HTTPScope) -> None:
        values: dict[bytes, str] = {}
        repeated: str | None = None
        for name, value in scope["headers"]:
            key = name.lower()
            if key in _READ:
                if key not in values:
                    values[key] = value.decode("latin-1")
                elif repeated is None and key in _ROUTING_HEADERS:
                    repeated = key.decode()
        self.values = values
        self.repeated = repeated

    def get(self, name: bytes) -> str | None:
        return self.values.get(name)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _encoded(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]


async def _send_json(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    length = (b"content-length", str(len(body)).encode())
    await _send(send, status, [_NO_STORE, *_encoded(headers), _JSON, length], body)


def _resource_metadata(issuer: str) -> str:
    return f"{issuer}/.well-known/oauth-protected-resource/mcp"


async def _send_error(send: Send, error: McpError, issuer: str) -> None:
    body = jsonrpc.encode(jsonrpc.error_message(error.request_id, error.rpc_code, error.description, error.data))
    headers = {}
    if isinstance(error, ScopeRequired):
        headers["WWW-Authenticate"] = challenge(
            _resource_metadata(issuer), error.scope, InsufficientScope(error.description)
        )
    await _send_json(send, error.status, body, headers)


async def _send_unauthorized(send: Send, error: BearerError, issuer: str) -> None:
    header = challenge(_resource_metadata(issuer), scopes.DEFAULT_SCOPE, error)
    body = jsonrpc.encode(
        jsonrpc.error_message(None, UNAUTHORIZED, error.description, {"error": error.code or "unauthorized"})
    )
    await _send_json(send, error.status, body, {"WWW-Authenticate": header})


async def _send_outcome(scope: HTTPScope, receive: Receive, send: Send, outcome: Outcome) -> None:
    if isinstance(outcome, Reply):
        if outcome.body is not None:
            await _send_json(send, outcome.status, outcome.body, outcome.headers)
        elif outcome.status == 204:
            await _send(send, 204, _encoded(outcome.headers))
        else:
            await _send(send, outcome.status, [*_encoded(outcome.headers), _JSON, (b"content-length", b"0")])
        return
    # Litestar's streaming response: it also listens for the client hanging up, which cancels the call.
    stream = ASGIStreamingResponse(
        iterator=outcome.events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        content_length=0,
    )
    await stream(scope, receive, send)


def _incoming(headers: _Headers, issuer: str, receive: Receive) -> Incoming:
    async def disconnected() -> None:
        # The body has been read: the next ASGI message is the client going away (or the reply being done).
        while (await receive())["type"] != "http.disconnect":
            pass

    return Incoming(
        issuer=issuer,
        session_id=headers.get(b"mcp-session-id"),
        protocol_version=headers.get(b"mcp-protocol-version"),
        accepts_sse=accepts_event_stream(headers.get(b"accept")),
        method=headers.get(b"mcp-method"),
        name=headers.get(b"mcp-name"),
        repeated_header=headers.repeated,
        disconnected=disconnected,
    )


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("Invalid Request: the body could not be read.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"The request body is larger than {MAX_BODY} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Work = Callable[[McpServer, _Headers, str, Receive], Awaitable[Outcome]]


async def _serve(scope: HTTPScope, receive: Receive, send: Send, work: Work, headers: _Headers) -> None:
    mcp: McpServer = scope["app"].state.mcp
    issuer = derive_issuer(
        mcp.runtime.settings.issuer,
        scheme=scope.get("scheme", "http"),
        host=headers.get(b"host"),
        forwarded_proto=headers.get(b"x-forwarded-proto"),
    )
    try:
        mcp.check_origin(headers.get(b"origin"), issuer)
        outcome = await work(mcp, headers, issuer, receive)
    except BearerError as error:
        await _send_unauthorized(send, error, issuer)
        return
    except McpError as error:
        await _send_error(send, error, issuer)
        return
    except Exception:
        log.exception("unexpected failure on %s /mcp", scope["method"])
        await _send_error(send, ServiceUnavailable("The server cannot answer right now; try again shortly."), issuer)
        return
    await _send_outcome(scope, receive, send, outcome)


async def _post(mcp: McpServer, headers: _Headers, issuer: str, receive: Receive) -> Outcome:
    """One JSON-RPC message: a request (answered as JSON or SSE), a notification or a response (202)."""
    grant = await mcp.authenticate(headers.get(b"authorization"), issuer)
    body = await _body(receive)
    return await mcp.post(grant, _incoming(headers, issuer, receive), body)


async def _delete(mcp: McpServer, headers: _Headers, issuer: str, receive: Receive) -> Outcome:
    """End the session named by `Mcp-Session-Id` (405 with the 2026 header: that revision has no sessions)."""
    grant = await mcp.authenticate(headers.get(b"authorization"), issuer)
    return await mcp.delete(grant, _incoming(headers, issuer, receive))


async def _get(mcp: McpServer, headers: _Headers, issuer: str, receive: Receive) -> Outcome:
    """No server-to-client stream is offered: progress travels on the POST that asked for it."""
    await mcp.authenticate(headers.get(b"authorization"), issuer)
    return mcp.method_not_allowed("GET", modern=_incoming(headers, issuer, receive).names_modern_version)


_METHODS: Final = {"POST": _post, "DELETE": _delete, "GET": _get}


@asgi("/mcp", copy_scope=False)
async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """POST one JSON-RPC message; DELETE a 2025 session; GET is 405 (no server-to-client stream)."""
    if scope["type"] != ScopeType.HTTP:
        raise ClientException()  # a WebSocket: what Litestar's router answered when /mcp had HTTP routes only
    method = scope["method"]
    handler = _METHODS.get(method)
    if handler is not None:
        await _serve(scope, receive, send, handler, _Headers(scope))
    elif method == "OPTIONS":
        await _send(send, 204, list(_OPTIONS_ALLOW))
    else:
        raise MethodNotAllowedException(headers={"allow": _ALLOWED_BY_ROUTER})


mcp_routes = [mcp_endpoint]


def fast_lane(app: ASGIApp) -> ASGIApp:
    """`app` (Litestar's router, inside the edge) with the plain case of `/mcp` served first, straight to the same
    handler as the route: `POST`, `GET` or `DELETE` at exactly `/mcp`, no root path, a `Host` the router would
    accept. The router's per-request work (path normalisation, the host check, the exception middleware's set-up)
    was a tenth of `/mcp`'s CPU; anything else (`/mcp/`, other methods, an odd `Host`) still goes through Litestar
    and gets its answers, so none changes."""

    async def lane(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == "/mcp" and not scope.get("root_path"):
            handler = _METHODS.get(scope["method"])
            headers = _Headers(scope)
            host = headers.get(b"host")
            if handler is not None and routable_host(host):
                await _serve(scope, receive, send, handler, headers)
                return
        await app(scope, receive, send)

    return lane
