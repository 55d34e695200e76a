"""What Litestar cannot see in a handler's signature, told to the OpenAPI document (`GET /schema/openapi.json`).

Litestar writes each operation from its handler: the parameters it declares, the body it takes as `data`, the type
it returns. Several handlers read the request themselves, on purpose: the OAuth endpoints hand the form or JSON to
Authlib as RFC 6749 and RFC 7591 define it, and the device API verifies a signature over the raw bytes before it
decodes anything. Their bodies and query parameters are described here from msgspec structs (the same ones the
device API decodes; for OAuth, `server.oauth.wire`, the RFCs' parameter lists), and every operation names its error
answers (`error_responses`), so a client generator or a fuzzer (server/tests/fuzz) knows every status it may get.

Only the routes modules use this module; it imports nothing of Vouchsim's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"

# What each error status means, the same for every operation that names it.
_MEANING = {
    400: "The request is malformed or refused (`error` names why).",
    401: "The caller is not authenticated: a missing, bad or revoked credential or signature.",
    403: "The caller is authenticated but may not do this.",
    404: "Nothing by that id, or not the caller's.",
    409: "The object is not in a state that allows this.",
    410: "The object has expired.",
    413: "The request body is too large.",
    415: "The request body's media type is not accepted.",
}


class ErrorDocument(msgspec.Struct, frozen=True, kw_only=True):
    """An error answer: an `error` code (RFC 6749 §5.2 style) and, usually, a human-readable description."""

    error: str
    error_description: str | None = None
    # The device API's `delegation_closed` names the delegation's status now (docs/delegations.md).
    status: str | None = None


def error_responses(*statuses: int, media_type: str = JSON) -> dict[int, ResponseSpec]:
    """The operation's error answers, each an `ErrorDocument` (or, with `media_type=HTML`, a page)."""
    return {
        status: ResponseSpec(
            data_container=ErrorDocument if media_type == JSON else str,
            description=_MEANING.get(status, "Refused."),
            media_type=media_type,
            generate_examples=False,
        )
        for status in statuses
    }


def response(data_container: Any, description: str, media_type: str = JSON) -> ResponseSpec:
    return ResponseSpec(
        data_container=data_container, description=description, media_type=media_type, generate_examples=False
    )


def json_schema(struct: type[msgspec.Struct]) -> Schema:
    """A flat struct's JSON Schema, inline (msgspec writes it; Litestar's spec objects serialise a plain dict as is)."""
    (_ref,), components = msgspec.json.schema_components([struct], ref_template="#/components/schemas/{name}")
    schema = components[struct.__name__]
    if "$ref" in msgspec.json.encode(schema).decode():
        raise ValueError(f"{struct.__name__} nests another struct: describe it as a component instead")
    return cast("Schema", schema)


def request_body(struct: type[msgspec.Struct], *media_types: str, required: bool = True) -> RequestBody:
    schema = json_schema(struct)
    return RequestBody(
        content={media_type: OpenAPIMediaType(schema=schema) for media_type in media_types or (JSON,)},
        description=(struct.__doc__ or "").strip() or None,
        required=required,
    )


def query_parameters(struct: type[msgspec.Struct]) -> list[Parameter]:
    """Each field of a flat struct as a query parameter, required as the struct requires it."""
    schema = cast("dict[str, Any]", json_schema(struct))
    required = set(schema.get("required", []))
    return [
        Parameter(name=name, param_in="query", schema=cast("Schema", field), required=name in required)
        for name, field in schema.get("properties", {}).items()
    ]


def operation(*, body: RequestBody | None = None, parameters: list[Parameter] | None = None) -> type[Operation]:
    """An `operation_class` for a handler that reads its request itself: Litestar's operation plus `body` and
    `parameters` (a handler's own declared parameters come first)."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            if body is not None and self.request_body is None:
                self.request_body = body
            if parameters:
                declared = list(self.parameters or [])
                names = {(p.name, p.param_in) for p in declared if isinstance(p, Parameter)}
                self.parameters = declared + [p for p in parameters if (p.name, p.param_in) not in names]

    return Documented
