"""The MCP tools (server/tools): `identity_get` and the three delegation tools of docs/delegations.md.

A tool is listed, and may be called, only when the token holds its scope (`identity` → `identity_get`,
`delegation` → the rest). Arguments are checked against the published JSON Schema (the same constraints, as
msgspec Structs); a bad argument is a JSON-RPC -32602 naming the reason. Failures of the tool itself (an unknown
audience, a scope the audience does not offer, an unknown delegation) are results with `isError: true` and a
sentence a person understands, so the model can read and act on them (server/tools, "Error Handling").

Results carry `structuredContent` matching each tool's `outputSchema` where the session's protocol version
has them (2025-06-18 on), and always the same JSON as text, for older clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

import msgspec

from vouchsim.server.core.clock import isoformat
from vouchsim.server.core.crypto import keyed_hash
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.delegation.schemas import DelegationView, IssuedToken
from vouchsim.server.delegation.service import PURPOSE_MAX_LENGTH, DelegationService
from vouchsim.server.delegation.states import DelegationStatus
from vouchsim.server.mcp.errors import InvalidParams
from vouchsim.server.mcp.protocol import has_structured_output
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.bearer import AccessGrant
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.session import Transactions

# How long a call waits for the device's decision: about 45 s by default and never more than 50 s, so a
# client with a 60-second request timeout always gets an answer (`pending` and a poll interval, at worst).
DEFAULT_WAIT_SECONDS: Final = 45.0
MAX_WAIT_SECONDS: Final = 50.0
POLL_INTERVAL_SECONDS: Final = 5


# -- what a tool runs with ------------------------------------------------------------------------------------
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

    def render(self, protocol_version: str) -> dict[str, Any]:
        """The `CallToolResult` for a session speaking `protocol_version`."""
        if self.is_error:
            return {"content": [{"type": "text", "text": self.summary}], "isError": True}
        result: dict[str, Any] = {
            "content": [
                {"type": "text", "text": json.dumps(self.structured, ensure_ascii=False)},
                {"type": "text", "text": self.summary},
            ],
            "isError": False,
        }
        if has_structured_output(protocol_version):
            result["structuredContent"] = self.structured
        return result


# -- arguments (the same constraints as the published input schemas) -----------------------------------------
Purpose = Annotated[str, msgspec.Meta(min_length=1, max_length=PURPOSE_MAX_LENGTH)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
WaitSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)]


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    pass


class RequestArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    audience_id: Ident
    purpose: Purpose
    scopes: Annotated[list[Ident], msgspec.Meta(min_length=1, max_length=32)]
    wait_for_approval: bool = True
    timeout_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS


class StatusArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    delegation_id: Ident
    wait_for_approval: bool = False
    timeout_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS


class RevokeArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    delegation_id: Ident


# -- schemas -------------------------------------------------------------------------------------------------
def _string(description: str, max_length: int = 128) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "description": description}


_WAIT_SECONDS_SCHEMA = {
    "type": "number",
    "minimum": 0,
    "maximum": MAX_WAIT_SECONDS,
    "default": DEFAULT_WAIT_SECONDS,
    "description": (
        f"How long to wait for the decision, in seconds (at most {MAX_WAIT_SECONDS:g}). When it runs out the "
        "result says `pending`: ask again with delegation_status."
    ),
}

_STATUSES = [status.value for status in DelegationStatus]

DELEGATION_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "delegationId": {"type": "string"},
        "status": {"type": "string", "enum": _STATUSES},
        "audienceId": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "purpose": {"type": "string"},
        "bindingMessage": {
            "type": "string",
            "description": "Shown on the user's trusted device too, so they can tell it is this request.",
        },
        "expiresAt": {"type": "string", "format": "date-time", "description": "When an undecided request expires."},
        "token": {"type": "string", "description": "The delegation token (a JWT) once approved."},
        "tokenExpiresAt": {"type": "string", "format": "date-time"},
        "pollIntervalSeconds": {"type": "integer", "description": "While pending: how often to ask again."},
    },
    "required": ["delegationId", "status", "audienceId", "scopes", "purpose", "bindingMessage", "expiresAt"],
}

IDENTITY_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subject": {
            "type": "string",
            "description": "The user's identifier for this application: stable, and different for every application.",
        },
        "clientId": {"type": "string"},
        "clientName": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "issuer": {"type": "string"},
    },
    "required": ["subject", "clientId", "clientName", "scopes", "issuer"],
}


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    scope: str
    arguments: type[msgspec.Struct]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: dict[str, Any]
    run: Callable[[ToolContext, Any], Awaitable[ToolResult]]
    # Whether a call may wait for the device (and so stream progress).
    may_wait: Callable[[Any], bool] = lambda _arguments: False

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


# -- identity_get --------------------------------------------------------------------------------------------
def pairwise_subject(hmac_key: bytes, user_id: str, client_id: str) -> str:
    """The user as this client knows them: stable for the client, unlinkable across clients, never the user id."""
    return keyed_hash(hmac_key, f"identity:{user_id}:{client_id}")


async def identity_get(ctx: ToolContext, _arguments: NoArguments) -> ToolResult:
    grant = ctx.grant
    async with ctx.transaction() as db:
        client = await ClientRepository(db).get(grant.client_id)
    client_name = (client.client_name if client else None) or grant.client_id
    subject = pairwise_subject(ctx.hmac_key, grant.user_id, grant.client_id)
    return ToolResult(
        {
            "subject": subject,
            "clientId": grant.client_id,
            "clientName": client_name,
            "scopes": list(grant.scopes),
            "issuer": ctx.issuer,
        },
        f"You act for the user {subject} of {ctx.issuer}, as {client_name}, with the scopes "
        f"{', '.join(grant.scopes) or '(none)'}.",
    )


# -- the delegation tools ------------------------------------------------------------------------------------
def _delegation_result(view: DelegationView, token: IssuedToken | None) -> ToolResult:
    status = str(view.status)
    result: dict[str, Any] = {
        "delegationId": view.delegation_id,
        "status": status,
        "audienceId": view.audience_id,
        "scopes": list(view.scopes),
        "purpose": view.purpose,
        "bindingMessage": view.binding_message,
        "expiresAt": isoformat(view.expires_at),
    }
    if token is not None:
        result["token"] = token.token
        result["tokenExpiresAt"] = isoformat(token.expires_at)
    if status == DelegationStatus.PENDING:
        result["pollIntervalSeconds"] = POLL_INTERVAL_SECONDS
    return ToolResult(result, _summary(view, status, token))


def _summary(view: DelegationView, status: str, token: IssuedToken | None) -> str:
    audience = view.audience_name or view.audience_id
    if status == DelegationStatus.PENDING:
        return (
            f"Waiting for the user to approve on their trusted device. Ask them to check that the device shows "
            f"“{view.binding_message}”. Call delegation_status with waitForApproval to keep waiting "
            f"(the request expires at {isoformat(view.expires_at)})."
        )
    if status == DelegationStatus.APPROVED:
        if token is None:
            return f"Approved for {audience}, but its delegation token is no longer available."
        return (
            f"Approved. Present the token to {audience} as a bearer credential; it is valid until "
            f"{isoformat(token.expires_at)}."
        )
    closed: dict[str, str] = {
        DelegationStatus.DENIED: "The user denied this request on their trusted device.",
        DelegationStatus.EXPIRED: "Nobody decided in time and the request expired; ask again if it is still needed.",
        DelegationStatus.CANCELLED: "This application withdrew the request before it was decided.",
        DelegationStatus.REVOKED: f"This delegation was revoked; its token is no longer accepted by {audience}.",
    }
    return closed.get(status, f"The delegation is {status}.")


def _problem(error: VouchsimError, doing: str) -> ToolResult:
    return ToolResult.error(f"{doing}: {error.description}")


async def _await_decision(ctx: ToolContext, view: DelegationView, budget: float) -> DelegationView:
    """Hold until the device decides, the delegation expires or `budget` seconds pass; report progress meanwhile."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + budget
    message = f"Waiting for approval on the user's trusted device (it shows “{view.binding_message}”)."
    while str(view.status) == DelegationStatus.PENDING:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        step = remaining
        if ctx.progress is not None:
            await ctx.progress.report(round(loop.time() - started, 1), budget, message)
            step = min(remaining, ctx.progress.interval)
        view = await ctx.delegations.wait(view.delegation_id, connection_id=ctx.grant.connection_id, timeout=step)
    return view


async def _answer(ctx: ToolContext, view: DelegationView) -> ToolResult:
    token = await ctx.delegations.token(view, issuer=ctx.issuer)
    return _delegation_result(view, token)


async def delegation_request(ctx: ToolContext, arguments: RequestArguments) -> ToolResult:
    grant = ctx.grant
    try:
        # Committed when this returns: the user's devices see the request from now on.
        view = await ctx.delegations.request(
            user_id=grant.user_id,
            client_id=grant.client_id,
            connection_id=grant.connection_id,
            audience_id=arguments.audience_id,
            purpose=arguments.purpose,
            scopes=list(arguments.scopes),
        )
        if arguments.wait_for_approval:
            view = await _await_decision(ctx, view, arguments.timeout_seconds)
        return await _answer(ctx, view)
    except VouchsimError as error:
        return _problem(error, "The delegation could not be requested")


async def delegation_status(ctx: ToolContext, arguments: StatusArguments) -> ToolResult:
    try:
        view = await ctx.delegations.get(arguments.delegation_id, connection_id=ctx.grant.connection_id)
        if arguments.wait_for_approval:
            view = await _await_decision(ctx, view, arguments.timeout_seconds)
        return await _answer(ctx, view)
    except VouchsimError as error:
        return _problem(error, "The delegation could not be read")


async def delegation_revoke(ctx: ToolContext, arguments: RevokeArguments) -> ToolResult:
    try:
        view = await ctx.delegations.withdraw(arguments.delegation_id, connection_id=ctx.grant.connection_id)
        return _delegation_result(view, None)
    except VouchsimError as error:
        return _problem(error, "The delegation could not be revoked")


def _waits(arguments: RequestArguments | StatusArguments) -> bool:
    return arguments.wait_for_approval and arguments.timeout_seconds > 0


_DELEGATION_ID = _string("The delegationId a delegation_request returned.")

TOOLS: tuple[Tool, ...] = (
    Tool(
        name="identity_get",
        title="Who is the user",
        description=(
            "The signed-in user's identity for this application: a pairwise subject (stable for this "
            "application, different for every other one), this client, the granted scopes and the issuer."
        ),
        scope=scopes.IDENTITY,
        arguments=NoArguments,
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        output_schema=IDENTITY_OUTPUT_SCHEMA,
        annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
        run=identity_get,
    ),
    Tool(
        name="delegation_request",
        title="Ask the user for a delegation",
        description=(
            "Ask the user, on their trusted device, to let this application act towards a service (the "
            "audience) with some of its scopes. Returns a binding message the device also shows. By default "
            "waits for the decision (up to timeoutSeconds); returns a delegation token once approved, or "
            "`pending` with a poll interval when the wait runs out."
        ),
        scope=scopes.DELEGATION,
        arguments=RequestArguments,
        input_schema={
            "type": "object",
            "properties": {
                "audienceId": _string("The service to act towards, e.g. aud_test_payments."),
                "purpose": _string("Why, in a sentence the user will read on their device.", PURPOSE_MAX_LENGTH),
                "scopes": {
                    "type": "array",
                    "items": _string("A scope the audience offers."),
                    "minItems": 1,
                    "maxItems": 32,
                    "description": "The audience's scopes to ask for.",
                },
                "waitForApproval": {
                    "type": "boolean",
                    "default": True,
                    "description": "Wait for the user's decision before answering.",
                },
                "timeoutSeconds": _WAIT_SECONDS_SCHEMA,
            },
            "required": ["audienceId", "purpose", "scopes"],
            "additionalProperties": False,
        },
        output_schema=DELEGATION_OUTPUT_SCHEMA,
        annotations={"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": True},
        run=delegation_request,
        may_wait=_waits,
    ),
    Tool(
        name="delegation_status",
        title="Check a delegation",
        description=(
            "The current state of a delegation this application requested; with waitForApproval, waits for "
            "the user's decision first (up to timeoutSeconds). Returns the delegation token once approved."
        ),
        scope=scopes.DELEGATION,
        arguments=StatusArguments,
        input_schema={
            "type": "object",
            "properties": {
                "delegationId": _DELEGATION_ID,
                "waitForApproval": {
                    "type": "boolean",
                    "default": False,
                    "description": "While pending, wait for the user's decision before answering.",
                },
                "timeoutSeconds": _WAIT_SECONDS_SCHEMA,
            },
            "required": ["delegationId"],
            "additionalProperties": False,
        },
        output_schema=DELEGATION_OUTPUT_SCHEMA,
        annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": True},
        run=delegation_status,
        may_wait=_waits,
    ),
    Tool(
        name="delegation_revoke",
        title="Withdraw or revoke a delegation",
        description=(
            "Withdraw a pending request of this application, or revoke an approved delegation so its token "
            "stops working. Revoking again changes nothing."
        ),
        scope=scopes.DELEGATION,
        arguments=RevokeArguments,
        input_schema={
            "type": "object",
            "properties": {"delegationId": _DELEGATION_ID},
            "required": ["delegationId"],
            "additionalProperties": False,
        },
        output_schema=DELEGATION_OUTPUT_SCHEMA,
        annotations={"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True, "openWorldHint": True},
        run=delegation_revoke,
    ),
)

_BY_NAME = {tool.name: tool for tool in TOOLS}


def tool_named(name: str) -> Tool | None:
    return _BY_NAME.get(name)


def visible_tools(granted: tuple[str, ...]) -> list[Tool]:
    """The tools a token with `granted` scopes may see and call."""
    return [tool for tool in TOOLS if tool.scope in granted]
