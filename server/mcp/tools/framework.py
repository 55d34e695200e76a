"""What a tool is (server/tools, "Tool"), what it runs with, and what it answers.

A tool's arguments are a msgspec Struct: it checks a call's arguments (a bad one is a JSON-RPC -32602 naming
the reason) and, through `msgspec.json.schema`, it is the published `inputSchema` too, so the schema and the check
cannot drift apart. Failures of the tool itself are results with `isError: true` and a sentence a person
understands, so the model can read and act on them (server/tools, "Error Handling").

Results carry `structuredContent` matching the tool's `outputSchema` where the protocol version has them
(2025-06-18 on), and always the same JSON as text, for older clients.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.mcp.errors import InvalidParams
from vouchsim.server.mcp.protocol import has_structured_output
from vouchsim.server.oauth.bearer import AccessGrant
from vouchsim.server.storage.session import Transactions


class Progress(Protocol):
    """Sends `notifications/progress` for the call (transport.py); `interval` is the pace it wants them at."""

    interval: float

    async def report(self, progress: float, total: float | None, message: str) -> None: ...


@dataclass(frozen=True)
class ToolContext:
    grant: AccessGrant
    issuer: str
    hmac_key: bytes
    protocol_version: str
    # A short transaction of its own (`/mcp` holds none across a call); the delegation service opens its own.
    transaction: Transactions
    delegations: DelegationService
    progress: Progress | None = None


@dataclass(frozen=True)
class ToolResult:
    structured: dict[str, Any]
    summary: str
    is_error: bool = False

    @classmethod
    def error(cls, message: str) -> ToolResult:
        return cls({}, message, is_error=True)

    @classmethod
    def problem(cls, error: VouchsimError, doing: str) -> ToolResult:
        """A refusal of the service behind the tool, as a result the model reads."""
        return cls.error(f"{doing}: {error.description}")

    def render(self, protocol_version: str) -> dict[str, Any]:
        """The `CallToolResult` for a session speaking `protocol_version`."""
        if self.is_error:
            return {"content": [{"type": "text", "text": self.summary}], "isError": True}
        result: dict[str, Any] = {
            "content": [
                # msgspec: the one JSON encoder of /mcp (a third of the stdlib's cost for this small dict).
                {"type": "text", "text": _encode(self.structured).decode()},
                {"type": "text", "text": self.summary},
            ],
            "isError": False,
        }
        if has_structured_output(protocol_version):
            result["structuredContent"] = self.structured
        return result


_encode = msgspec.json.Encoder().encode


def input_schema(arguments: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of an arguments Struct, inlined: what `tools/list` publishes as `inputSchema`.

    Field constraints and descriptions come from the Struct's `msgspec.Meta`; `forbid_unknown_fields` becomes
    `additionalProperties: false`. The Structs hold no nested Structs, so no `$defs` are left to resolve."""
    generated = msgspec.json.schema(arguments)
    schema = dict(generated["$defs"][arguments.__name__]) if "$ref" in generated else dict(generated)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    if "$ref" in json.dumps(schema):
        raise TypeError(f"{arguments.__name__}: nested Structs are not inlined into the published schema")
    return schema


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    scope: str
    arguments: type[msgspec.Struct]
    output_schema: dict[str, Any]
    annotations: dict[str, Any]
    run: Callable[[ToolContext, Any], Awaitable[ToolResult]]
    # Whether a call may wait for the device (and so stream progress, or become a task).
    may_wait: Callable[[Any], bool] = lambda _arguments: False

    @property
    def input_schema(self) -> dict[str, Any]:
        return _schemas(self.arguments)

    def describe(self, protocol_version: str) -> dict[str, Any]:
        """The tool as `tools/list` shows it to a session speaking `protocol_version`."""
        entry: dict[str, Any] = {"name": self.name}
        if has_structured_output(protocol_version):
            entry["title"] = self.title
        entry["description"] = self.description
        entry["inputSchema"] = self.input_schema
        if has_structured_output(protocol_version):
            entry["outputSchema"] = self.output_schema
        entry["annotations"] = {"title": self.title, **self.annotations}
        return entry

    def parse_arguments(self, arguments: object) -> Any:
        if arguments is None:
            arguments = {}
        try:
            return msgspec.convert(arguments, self.arguments)
        except msgspec.ValidationError as error:
            raise InvalidParams(f"Invalid arguments for {self.name}: {error}.") from None


_SCHEMAS: dict[type[msgspec.Struct], dict[str, Any]] = {}


def _schemas(arguments: type[msgspec.Struct]) -> dict[str, Any]:
    """Each Struct's schema is generated once (tools/list is on the hot path)."""
    if arguments not in _SCHEMAS:
        _SCHEMAS[arguments] = input_schema(arguments)
    return _SCHEMAS[arguments]
