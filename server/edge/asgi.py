"""What the edge's checks share: ASGI types, the request's headers read once, its issuer and client address, and
the one way they refuse a request (JSON in the refused endpoint's own error shape)."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vouchsim.server.core.issuer import derive_issuer
from vouchsim.server.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# JSON-RPC 2.0 §5.1
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SERVER_ERROR = -32000  # implementation-defined: what /mcp answers for "not now" (a rate limit)


class EdgeHeaders:
    """A request's headers as the edge reads them, from one pass over the raw list: the first value of each name
    (lower-cased), and whether any header is one the input guard must look at closely (`suspect`: a NUL byte, a
    `Basic` credential or a cookie with an encoded NUL; server.edge.inputs)."""

    __slots__ = ("first", "suspect")

    def __init__(self, scope: Scope) -> None:
        first: dict[bytes, bytes] = {}
        suspect = False
        for name, value in scope.get("headers", ()):
            key = name.lower()
            if key not in first:
                first[key] = value
            if b"\x00" in value:
                suspect = True
            elif key == b"authorization":
                suspect = suspect or value.strip().partition(b" ")[0].lower() == b"basic"
            elif key == b"cookie":
                suspect = suspect or b"%00" in value
        self.first = first
        self.suspect = suspect

    def get(self, name: bytes) -> str | None:
        """The first `name` header (lower-case bytes) as latin-1 text, or None."""
        value = self.first.get(name)
        return None if value is None else bytes(value).decode("latin-1")

    def has(self, name: bytes) -> bool:
        return name in self.first


def issuer_for(settings: Settings, scope: Scope, headers: EdgeHeaders | None = None) -> str:
    """The request's issuer, derived as `server.http.issuer.issuer_of` derives it, but from the ASGI scope: the
    edge runs before Litestar makes a request."""
    headers = headers or EdgeHeaders(scope)
    return derive_issuer(
        settings.issuer,
        scheme=scope.get("scheme", "http"),
        host=headers.get(b"host"),
        forwarded_proto=headers.get(b"x-forwarded-proto"),
    )


def client_address(settings: Settings, scope: Scope, headers: EdgeHeaders | None = None) -> str:
    """The socket's peer; with `rate_limit_forwarded_for`, the last `X-Forwarded-For` entry (the address the
    trusted proxy saw) when there is one."""
    if settings.rate_limit_forwarded_for:
        forwarded = (headers or EdgeHeaders(scope)).get(b"x-forwarded-for")
        if forwarded and (last := forwarded.split(",")[-1].strip()):
            return last[:64]
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_mcp(path: str) -> bool:
    return path == "/mcp" or path.startswith("/mcp/")


def is_page(scope: Scope) -> bool:
    """The authorization endpoint a person's browser is sent to: its answers are pages, the edge's too (the
    OpenAPI document says `text/html` for it)."""
    return scope.get("method") in ("GET", "HEAD") and scope.get("path") == "/oauth/authorize"


_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Vouchsim: {title}</title>"
    "<h1>{title}</h1><p>{description}</p><p><small>{error}</small></p></html>"
)


async def refuse(
    scope: Scope,
    send: Send,
    status: int,
    error: str,
    description: str,
    *,
    rpc_code: int = INVALID_REQUEST,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer at once: `{"error", "error_description"}` (RFC 6749 §5.2's shape, which the device API shares); on
    `/mcp` a JSON-RPC error object whose `data.error` carries the same code; at `GET /oauth/authorize`, where a
    person's browser lands, a short page saying the same."""
    if is_page(scope):
        page = _PAGE.format(
            title=html.escape("Too many requests" if status == 429 else "This request cannot be used"),
            description=html.escape(description),
            error=html.escape(error),
        ).encode()
        await _answer(send, status, page, "text/html; charset=utf-8", headers)
        return
    if is_mcp(scope.get("path", "")):
        data: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": rpc_code, "message": description, "data": {"error": error}},
        }
    else:
        data = {"error": error, "error_description": description}
    await _answer(send, status, json.dumps(data).encode(), "application/json", headers)


async def _answer(send: Send, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None) -> None:
    answer = {
        "content-type": content_type,
        "cache-control": "no-store",
        "content-length": str(len(payload)),
        **{name.lower(): value for name, value in (headers or {}).items()},
    }
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.items()],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
