"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as MCP uses it (basic/index, "Messages").

One message per POST (MCP 2025-06-18 removed batching). MCP narrows JSON-RPC: a request id is a string or an
integer, never null; `params`, when present, is an object. Parsing raises the error JSON-RPC names for each
fault: -32700 for bytes that are not JSON, -32600 for JSON that is not a message.
"""

from __future__ import annotations

from typing import Any, Final, TypeGuard

import msgspec

from vouchsim.server.mcp.errors import InvalidRequest, ParseError

VERSION: Final = "2.0"

RequestId = str | int


class Request(msgspec.Struct, frozen=True):
    """A call that expects an answer."""

    id: RequestId
    method: str
    params: dict[str, Any] | None = None


class Notification(msgspec.Struct, frozen=True):
    """A one-way message: no answer, not even an error."""

    method: str
    params: dict[str, Any] | None = None


class ClientResponse(msgspec.Struct, frozen=True):
    """The client's answer to a request of ours (we send none, so it is acknowledged and dropped)."""

    id: RequestId


Message = Request | Notification | ClientResponse


# -- what we send --------------------------------------------------------------------------------------------
class ErrorObject(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class ResultMessage(msgspec.Struct, frozen=True, kw_only=True):
    jsonrpc: str = VERSION
    id: RequestId
    result: Any


class ErrorMessage(msgspec.Struct, frozen=True, kw_only=True):
    jsonrpc: str = VERSION
    id: RequestId | None
    error: ErrorObject


class NotificationMessage(msgspec.Struct, frozen=True, kw_only=True):
    jsonrpc: str = VERSION
    method: str
    params: dict[str, Any]


Outgoing = ResultMessage | ErrorMessage | NotificationMessage

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(message: Outgoing) -> bytes:
    return _encoder.encode(message)


def error_message(id_: RequestId | None, code: int, message: str, data: Any = None) -> ErrorMessage:
    return ErrorMessage(id=id_, error=ErrorObject(code=code, message=message, data=data))


# -- what we receive -----------------------------------------------------------------------------------------
def is_request_id(value: object) -> TypeGuard[RequestId]:
    # bool is an int to Python, not to JSON; floats are not allowed ids in MCP.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def request_id_of(value: object) -> RequestId | None:
    """The id of a (possibly invalid) message, for the error answer; None when there is no usable one."""
    if isinstance(value, dict):
        candidate = value.get("id")
        if is_request_id(candidate):
            return candidate
    return None


def parse(body: bytes) -> Message:
    """One JSON-RPC message from a request body, or `ParseError` / `InvalidRequest`."""
    try:
        data = _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ParseError("Parse error: the body is not valid JSON.") from None
    except RecursionError:
        raise ParseError("Parse error: the body is nested too deep.") from None
    return validate(data)


def validate(data: object) -> Message:
    if isinstance(data, list):
        raise InvalidRequest("Invalid Request: send one JSON-RPC message per request (batches are not supported).")
    if not isinstance(data, dict):
        raise InvalidRequest("Invalid Request: a JSON-RPC message is a JSON object.")
    request_id = request_id_of(data)
    if data.get("jsonrpc") != VERSION:
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0".', request_id=request_id)
    has_id = "id" in data
    if has_id and not is_request_id(data["id"]):
        raise InvalidRequest('Invalid Request: "id" must be a string or an integer.')
    if "method" not in data:
        if has_id and ("result" in data) != ("error" in data):
            return ClientResponse(id=data["id"])
        raise InvalidRequest(
            'Invalid Request: a message needs a "method" (or, as a response, a "result" or "error").',
            request_id=request_id,
        )
    method = data["method"]
    if not isinstance(method, str) or not method:
        raise InvalidRequest('Invalid Request: "method" must be a non-empty string.', request_id=request_id)
    params = data.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidRequest('Invalid Request: "params" must be an object.', request_id=request_id)
    if has_id:
        return Request(id=data["id"], method=method, params=params)
    return Notification(method=method, params=params)
