"""The delegation tools (scope `delegation`, docs/delegations.md): `delegation_request`, `delegation_status`,
`delegation_revoke`.

A call that waits for the device's decision holds at most `timeoutSeconds` (45 s by default, never more than 50, so a
client with a 60-second request timeout always gets an answer: `pending` and a poll interval, at worst), woken at
once by the decision. A 2026-07-28 client that declares the Tasks extension gets a task instead (server.mcp.tasks),
whose result is exactly what `delegation_result` gives here.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from vouchsim.server.core.clock import isoformat
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.delegation.schemas import DelegationRecord, DelegationView, IssuedToken
from vouchsim.server.delegation.service import PURPOSE_MAX_LENGTH
from vouchsim.server.delegation.states import DelegationStatus
from vouchsim.server.mcp.tools.framework import Tool, ToolContext, ToolResult
from vouchsim.server.oauth import scopes

DEFAULT_WAIT_SECONDS: Final = 45.0
MAX_WAIT_SECONDS: Final = 50.0
POLL_INTERVAL_SECONDS: Final = 5

# -- arguments: the checks, and through msgspec.json.schema the published input schemas -----------------------
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
AudienceId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, description="The service to act towards, e.g. aud_test_payments.")
]
Purpose = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=PURPOSE_MAX_LENGTH,
        description="Why, in a sentence the user will read on their device.",
    ),
]
AudienceScope = Annotated[str, msgspec.Meta(min_length=1, max_length=128, description="A scope the audience offers.")]
AudienceScopes = Annotated[
    list[AudienceScope], msgspec.Meta(min_length=1, max_length=32, description="The audience's scopes to ask for.")
]
DelegationId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, description="The delegationId a delegation_request returned.")
]
WaitSeconds = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=(
            f"How long to wait for the decision, in seconds (at most {MAX_WAIT_SECONDS:g}). When it runs out the "
            "result says `pending`: ask again with delegation_status."
        ),
    ),
]


class RequestArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """What delegation_request asks the user for."""

    audience_id: AudienceId
    purpose: Purpose
    scopes: AudienceScopes
    wait_for_approval: Annotated[bool, msgspec.Meta(description="Wait for the user's decision before answering.")] = (
        True
    )
    timeout_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS


class StatusArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Which delegation to read, and whether to wait for its decision."""

    delegation_id: DelegationId
    wait_for_approval: Annotated[
        bool, msgspec.Meta(description="While pending, wait for the user's decision before answering.")
    ] = False
    timeout_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS


class RevokeArguments(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Which delegation to withdraw or revoke."""

    delegation_id: DelegationId


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


# -- results ----------------------------------------------------------------------------------------------------
def waiting_message(view: DelegationView) -> str:
    return f"Waiting for approval on the user's trusted device (it shows “{view.binding_message}”)."


def delegation_result(view: DelegationView, token: IssuedToken | None) -> ToolResult:
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


async def answer(ctx: ToolContext, of: DelegationView | DelegationRecord) -> ToolResult:
    """The result for the delegation as it is now, with its token while it is approved and the token is live (a
    record just committed or read is minted from as it is; a view is checked against the database first)."""
    token = await ctx.delegations.token(of, issuer=ctx.issuer)
    return delegation_result(of.view if isinstance(of, DelegationRecord) else of, token)


# -- the tools ------------------------------------------------------------------------------------------------
REQUEST_REFUSED = "The delegation could not be requested"


async def _await_decision(ctx: ToolContext, view: DelegationView, budget: float) -> DelegationView | DelegationRecord:
    """Hold until the device decides, the delegation expires or `budget` seconds pass; report progress meanwhile
    (the service's one waiting loop calls back at the progress pace)."""
    if str(view.status) != DelegationStatus.PENDING or budget <= 0:
        return view
    progress = ctx.progress
    if progress is None:
        return await ctx.delegations.wait_record(
            view.delegation_id, connection_id=ctx.grant.connection_id, timeout=budget
        )
    message = waiting_message(view)

    async def tick(elapsed: float) -> None:
        await progress.report(round(elapsed, 1), budget, message)

    return await ctx.delegations.wait_record(
        view.delegation_id, connection_id=ctx.grant.connection_id, timeout=budget, tick=tick, interval=progress.interval
    )


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
        if not arguments.wait_for_approval:
            return await answer(ctx, view)
        return await answer(ctx, await _await_decision(ctx, view, arguments.timeout_seconds))
    except VouchsimError as error:
        return ToolResult.problem(error, REQUEST_REFUSED)


async def delegation_status(ctx: ToolContext, arguments: StatusArguments) -> ToolResult:
    try:
        view = await ctx.delegations.get(arguments.delegation_id, connection_id=ctx.grant.connection_id)
        if not arguments.wait_for_approval:
            return await answer(ctx, view)
        return await answer(ctx, await _await_decision(ctx, view, arguments.timeout_seconds))
    except VouchsimError as error:
        return ToolResult.problem(error, "The delegation could not be read")


async def delegation_revoke(ctx: ToolContext, arguments: RevokeArguments) -> ToolResult:
    try:
        view = await ctx.delegations.withdraw(arguments.delegation_id, connection_id=ctx.grant.connection_id)
        return delegation_result(view, None)
    except VouchsimError as error:
        return ToolResult.problem(error, "The delegation could not be revoked")


def waits(arguments: RequestArguments | StatusArguments) -> bool:
    return arguments.wait_for_approval and arguments.timeout_seconds > 0


DELEGATION_REQUEST = Tool(
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
    output_schema=DELEGATION_OUTPUT_SCHEMA,
    annotations={"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": True},
    run=delegation_request,
    may_wait=waits,
)

DELEGATION_STATUS = Tool(
    name="delegation_status",
    title="Check a delegation",
    description=(
        "The current state of a delegation this application requested; with waitForApproval, waits for "
        "the user's decision first (up to timeoutSeconds). Returns the delegation token once approved."
    ),
    scope=scopes.DELEGATION,
    arguments=StatusArguments,
    output_schema=DELEGATION_OUTPUT_SCHEMA,
    annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": True},
    run=delegation_status,
    may_wait=waits,
)

DELEGATION_REVOKE = Tool(
    name="delegation_revoke",
    title="Withdraw or revoke a delegation",
    description=(
        "Withdraw a pending request of this application, or revoke an approved delegation so its token "
        "stops working. Revoking again changes nothing."
    ),
    scope=scopes.DELEGATION,
    arguments=RevokeArguments,
    output_schema=DELEGATION_OUTPUT_SCHEMA,
    annotations={"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True, "openWorldHint": True},
    run=delegation_revoke,
)
