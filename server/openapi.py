"""What Litestar cannot see in a handler's signature, told to the OpenAPI document (`GET /schema/openapi.json`).

Litestar writes each operation from its handler: the parameters it declares, the body it takes as `data`, the type
it returns. Several handlers read the request themselves, on purpose: the OAuth endpoints hand the form or JSON to
Authlib as RFC 6749 and RFC 7591 define it, and the device API verifies a signature over the raw bytes before it
decodes anything. Their bodies and query parameters are described here from msgspec structs (the same ones the
device API decodes; for OAuth, `server.oauth.wire`, the RFCs' parameter lists), and every operation names its error
answers (`error_responses`), and those the edge gives before any route runs (`with_edge_answers`), so a client
generator or a fuzzer (server/tests/fuzz) knows every status it may get.

Only the routes modules and the composition root (its `render_plugins`) use this module; it imports nothing of
Vouchsim's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar import Request
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RapidocRenderPlugin,
    RedocRenderPlugin,
    StoplightRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
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
    421: "The `Host` header names no name this server answers to (the host guard; RFC 9110 §15.5.20).",
    429: "Too many requests from this address (`Retry-After` says when to try again; RFC 6585 §4).",
}
# Methods whose body the edge does not read (server.edge.layer): no 413 for them.
_BODYLESS = frozenset({"get", "head", "options"})
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


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


def with_edge_answers(document: dict[str, Any], limited: Callable[[str, str], object]) -> dict[str, Any]:
    """`document` (an OpenAPI document as a dict) with the answers the edge gives before any route runs
    (`server.edge`), on every operation: 421 from the host guard, 400 from the input guard (path, query and
    headers), 413 where a body is read, and 429 with `Retry-After` where `limited(METHOD, path)` names a rate limit.
    Each in the media type of the operation's own errors (a page at `GET /oauth/authorize`). Litestar has no
    responses for every route, so they are added to the document it wrote; `document` itself is left as it was."""
    result = copy.deepcopy(document)
    for path, item in result.get("paths", {}).items():
        for method, operation_ in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation_.setdefault("responses", {})
            media_type = _error_media_type(responses)
            statuses = [400, 421]
            if method not in _BODYLESS:
                statuses.append(413)
            if limited(method.upper(), path):
                statuses.append(429)
            for status in statuses:
                responses.setdefault(str(status), _edge_response(status, media_type))
    return result


def _error_media_type(responses: dict[str, Any]) -> str:
    for status, answer in responses.items():
        if status.startswith(("4", "5")) and answer.get("content"):
            return str(next(iter(answer["content"])))
    return JSON


def _edge_response(status: int, media_type: str) -> dict[str, Any]:
    schema = {"type": "string"} if media_type == HTML else {"$ref": f"#/components/schemas/{ErrorDocument.__name__}"}
    answer: dict[str, Any] = {"description": _MEANING[status], "content": {media_type: {"schema": schema}}}
    if status == 429:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
        }
    return answer


class _EdgeAnswers:
    """`with_edge_answers` of the document Litestar wrote, made once per app (Litestar keeps its document)."""

    def __init__(self, limited: Callable[[str, str], object]) -> None:
        self._limited = limited
        self._made: tuple[dict[str, Any], dict[str, Any]] | None = None

    def of(self, written: dict[str, Any]) -> dict[str, Any]:
        if self._made is None or self._made[0] is not written:
            self._made = (written, with_edge_answers(written, self._limited))
        return self._made[1]


class _WithEdgeAnswers(OpenAPIRenderPlugin):
    """The document as `inner` renders it (JSON, YAML), at its paths, with the edge's answers added."""

    def __init__(self, inner: OpenAPIRenderPlugin, answers: _EdgeAnswers) -> None:
        super().__init__(path=inner.paths, media_type=inner.media_type)
        self._inner = inner
        self._answers = answers

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self._inner.render(request, self._answers.of(openapi_schema))


def render_plugins(limited: Callable[[str, str], object]) -> list[OpenAPIRenderPlugin]:
    """What `/schema` serves: Litestar's default set (`/schema` itself is ReDoc), with the JSON and YAML documents,
    which the other pages load, carrying the edge's answers (`with_edge_answers`)."""
    answers = _EdgeAnswers(limited)
    return [
        RedocRenderPlugin(path=["/redoc", "/"]),
        _WithEdgeAnswers(JsonRenderPlugin(), answers),
        _WithEdgeAnswers(YamlRenderPlugin(), answers),
        SwaggerRenderPlugin(),
        StoplightRenderPlugin(),
        RapidocRenderPlugin(),
    ]
