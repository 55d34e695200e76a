"""`identity_get` (scope `identity`): who the signed-in user is for this client, as a pairwise subject."""

from __future__ import annotations

from typing import Any

import msgspec

from vouchsim.server.core.subjects import client_subject
from vouchsim.server.mcp.tools.framework import Tool, ToolContext, ToolResult
from vouchsim.server.oauth import scopes


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    """identity_get takes no arguments."""


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


async def identity_get(ctx: ToolContext, _arguments: NoArguments) -> ToolResult:
    grant = ctx.grant
    client_name = grant.client_name or grant.client_id  # validated with the token: no database read per call
    subject = client_subject(ctx.hmac_key, grant.user_id, grant.client_id)
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


IDENTITY_GET = Tool(
    name="identity_get",
    title="Who is the user",
    description=(
        "The signed-in user's identity for this application: a pairwise subject (stable for this "
        "application, different for every other one), this client, the granted scopes and the issuer."
    ),
    scope=scopes.IDENTITY,
    arguments=NoArguments,
    output_schema=IDENTITY_OUTPUT_SCHEMA,
    annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    run=identity_get,
)
