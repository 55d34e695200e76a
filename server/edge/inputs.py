"""The input guard: bad input of any shape is refused here, before any handler, with a 4xx.

The threats are requests that break a parser or a database rather than a rule: JSON nested 50,000 deep (Python's
and msgspec's recursion limits, a 500), bodies that are not UTF-8, and NUL characters, which PostgreSQL cannot
store in text (an error from the driver, a 500, on one backend only; on SQLite a NUL was stored). One check at
the edge covers every route and every body type, present and future, instead of one per handler:

- the path, the query string (percent-decoded), and every header: no NUL; the query must decode as UTF-8. The
  headers that carry credentials are decoded as the server decodes them: a `Basic` pair (base64, then
  percent-decoding, RFC 6749 §2.3.1) and cookie values (percent-decoding) must hold no NUL either;
- a body: at most `MAX_BODY` bytes (413), UTF-8 text without NUL; a form's decoded names and values likewise; a
  JSON body (whatever its content type says) at most `MAX_DEPTH` deep, and none of its strings (names included)
  holding NUL or a lone surrogate.

JSON that does not parse is left to the handler, which answers it in its own terms (`invalid_client_metadata`,
-32700). Refusals: 400 `invalid_request` (JSON-RPC -32700 on `/mcp` for a body that cannot be read as JSON text,
-32600 for a NUL inside valid JSON), 413 `request_too_large`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec

from vouchsim.server.edge.asgi import INVALID_REQUEST, PARSE_ERROR, EdgeHeaders, Message, Receive, Scope

MAX_BODY = 1024 * 1024  # the largest body any endpoint takes (/mcp's limit)
MAX_DEPTH = 64  # JSON nesting: MCP tool arguments need a handful of levels
_decoder = msgspec.json.Decoder()


class BadInput(Exception):
    def __init__(self, description: str, *, rpc_code: int = PARSE_ERROR) -> None:
        super().__init__(description)
        self.description = description
        self.rpc_code = rpc_code


class TooLarge(Exception):
    pass


def check_request_line(scope: Scope, headers: EdgeHeaders | None = None) -> None:
    """The path, the query string and the headers; raises `BadInput`. With the request's `EdgeHeaders`, the
    headers are looked at one by one only when that pass found one worth a look (`suspect`)."""
    if "\x00" in scope.get("path", ""):
        raise BadInput("The path contains a NUL character.", rpc_code=INVALID_REQUEST)
    query = bytes(scope.get("query_string", b""))
    if query:
        check_form(query, "query string")
    if headers is not None and not headers.suspect:
        return
    for name, value in scope.get("headers", ()):
        raw = bytes(value)
        key = bytes(name).lower()
        if b"\x00" in raw:
            raise BadInput(f"The {key.decode('latin-1')} header contains a NUL character.", rpc_code=INVALID_REQUEST)
        if key == b"authorization":
            _check_basic(raw)
        elif key == b"cookie" and b"%00" in raw:
            raise BadInput("A cookie contains a NUL character.", rpc_code=INVALID_REQUEST)


def _check_basic(raw: bytes) -> None:
    scheme, _, credentials = raw.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return  # not base64: the token endpoint refuses it as invalid_client
    if b"\x00" in decoded or "\x00" in unquote(decoded.decode("latin-1")):
        raise BadInput("The client credentials contain a NUL character.", rpc_code=INVALID_REQUEST)


def check_form(data: bytes, what: str) -> None:
    """`application/x-www-form-urlencoded` text (a body or a query string): UTF-8 once decoded, no NUL."""
    try:
        text = data.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadInput(f"The {what} is not valid UTF-8.", rpc_code=INVALID_REQUEST) from None
    except ValueError:
        return  # the handler's own parser answers a malformed form
    if "\x00" in text or any("\x00" in name or "\x00" in value for name, value in pairs):
        raise BadInput(f"The {what} contains a NUL character.", rpc_code=INVALID_REQUEST)


def check_body(content_type: str, body: bytes) -> None:
    """Raises `BadInput` for a body no handler should see."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        check_form(body, "form body")
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("The body is not valid UTF-8 text.") from None
    if "\x00" in text:
        raise BadInput("The body contains a NUL character.")
    if media == "application/json" or media.endswith("+json") or text.lstrip()[:1] in ("{", "["):
        if b"\\u" not in body and body.count(b"{") + body.count(b"[") < MAX_DEPTH:
            # Nothing `check_json` could refuse: no escape (the only way to a NUL or a lone surrogate in valid
            # UTF-8 text without NUL bytes), and fewer brackets than the depth limit (strings' included).
            return
        check_json(body)


def check_json(body: bytes) -> None:
    """Nesting and strings of a JSON body; a body that does not parse is left alone."""
    try:
        data = _decoder.decode(body)
    except RecursionError:
        raise BadInput(f"The JSON body is nested deeper than {MAX_DEPTH} levels.") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # Python's json module, which some handlers use, is more lenient (NaN, lone surrogates): judge as it reads.
        try:
            data = json.loads(body)
        except RecursionError:
            raise BadInput(f"The JSON body is nested deeper than {MAX_DEPTH} levels.") from None
        except ValueError:
            return
    _walk(data)


def _walk(data: Any) -> None:
    """Every string of `data` (names included), iteratively, at most MAX_DEPTH containers deep."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise BadInput(f"The JSON body is nested deeper than {MAX_DEPTH} levels.")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_string(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_string(value: str) -> None:
    if "\x00" in value:
        raise BadInput("A string in the JSON body contains a NUL character.", rpc_code=INVALID_REQUEST)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("A string in the JSON body is not valid Unicode (a lone surrogate).") from None


async def read_body(receive: Receive, max_body: int = MAX_BODY) -> tuple[bytes, Receive]:
    """The whole body (`TooLarge` past `max_body`), and a `receive` that hands the app the same body, then
    whatever follows (a disconnect)."""
    chunks: list[bytes] = []
    size = 0
    pending: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            pending.append(message)
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > max_body:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *pending]

    async def replaying() -> Message:
        if replay:
            return replay.pop(0)
        return await receive()

    return body, replaying
