"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663, ext-tasks specification 2026-07-28) for
waiting delegations.

When a 2026-07-28 `tools/call` of `delegation_request` wants to wait for the decision and its `_meta` declares the
extension, the delegation and its task are created in one transaction and the task is returned at once
(`CreateTaskResult`, `resultType: "task"`): durable before the answer, so a `tasks/get` on any instance finds it.

```
  working ──device approves, denies, or the delegation expires──▶ completed (the tool result, frozen)
     └──────tasks/cancel, or delegation_revoke while pending──────▶ cancelled
```

`tasks/get` reads the delegation itself, so the device's decision shows on the very next poll, and
`pollIntervalMs` is what polling is worth: a few seconds, less when the delegation expires sooner. The first poll
that sees the decision freezes the result exactly as the blocking call would have given it (a token included), sealed
in the database; terminal tasks never change again (a later revocation shows in `delegation_status`, not here) and
are forgotten an hour after they ended (`ttlMs` says when).

Task ids are 256 random bits (`vtk_…`); only their SHA-256 is stored, and a task answers only the user, client and
runtime connection of the token that created it: anyone else's `tasks/*` is -32602 "Task not found", as an unknown
or expired id is. A request that did not declare the extension gets -32021 (transport.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Final

from vouchsim.server.core.clock import Clock, as_utc, isoformat
from vouchsim.server.core.crypto import hash_secret, random_token, seal, unseal
from vouchsim.server.delegation.schemas import DelegationView
from vouchsim.server.delegation.states import DelegationStatus
from vouchsim.server.mcp import protocol
from vouchsim.server.mcp.era import Envelope
from vouchsim.server.mcp.errors import InternalError, InvalidParams, MissingClientCapability
from vouchsim.server.mcp.tools import Tool
from vouchsim.server.mcp.tools.delegation import DELEGATION_REQUEST, RequestArguments, answer, waiting_message
from vouchsim.server.mcp.tools.framework import ToolContext
from vouchsim.server.storage.models import McpTask
from vouchsim.server.storage.repositories.mcp_tasks import McpTaskRepository

TASK_ID_PREFIX: Final = "vtk_"
MAX_TASK_ID_LENGTH: Final = 128
POLL_INTERVAL_MS: Final = 2000
MIN_POLL_INTERVAL_MS: Final = 200
RESULT_RETENTION: Final = timedelta(hours=1)
SEAL_PURPOSE: Final = "mcp-task-result"
METHODS: Final = ("tasks/get", "tasks/update", "tasks/cancel")

WORKING, COMPLETED, CANCELLED = "working", "completed", "cancelled"


def wants_task(tool: Tool, arguments: Any, envelope: Envelope | None) -> bool:
    """A task is offered only to a request that declared the extension (TASKS: MUST NOT otherwise), and only for a
    `delegation_request` that would wait; every other call keeps its blocking answer."""
    return (
        envelope is not None
        and envelope.declares_tasks
        and tool is DELEGATION_REQUEST
        and isinstance(arguments, RequestArguments)
        and tool.may_wait(arguments)
    )


def require_extension(envelope: Envelope) -> None:
    """TASKS "Protocol Errors": `tasks/*` from a request that did not declare the extension is -32021."""
    if not envelope.declares_tasks:
        raise MissingClientCapability(
            "Missing required client capability: declare the io.modelcontextprotocol/tasks extension in "
            "_meta.io.modelcontextprotocol/clientCapabilities.extensions to use tasks.",
            data={"requiredCapabilities": {"extensions": {protocol.TASKS_EXTENSION: {}}}},
        )


def task_id_of(params: dict[str, Any] | None) -> str:
    task_id = (params or {}).get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidParams('Invalid params: tasks/* need the "taskId" a tools/call returned.')
    return task_id


class McpTasks:
    def __init__(self, clock: Clock, hmac_key: bytes) -> None:
        self.clock = clock
        self.seal_key = hmac_key.decode()

    async def start(self, ctx: ToolContext, arguments: RequestArguments) -> dict[str, Any]:
        """The delegation and its task, committed together; the `CreateTaskResult` fields. Raises the delegation
        service's refusals (an unknown audience, …), which the caller answers as the tool's error result."""
        grant = ctx.grant
        now = self.clock.now()
        task_id = TASK_ID_PREFIX + random_token(32)
        async with ctx.transaction() as db:
            view = await ctx.delegations.within(db).request(
                user_id=grant.user_id,
                client_id=grant.client_id,
                connection_id=grant.connection_id,
                audience_id=arguments.audience_id,
                purpose=arguments.purpose,
                scopes=list(arguments.scopes),
            )
            tasks = McpTaskRepository(db)
            await tasks.purge(grant.connection_id, now)
            row = McpTask(
                id=hash_secret(task_id),
                user_id=grant.user_id,
                client_id=grant.client_id,
                connection_id=grant.connection_id,
                delegation_id=view.delegation_id,
                status=WORKING,
                result_sealed=None,
                created_at=now,
                last_updated_at=now,
                # Long enough to be polled to its end and read for a while after.
                expires_at=view.expires_at + RESULT_RETENTION,
            )
            await tasks.add(row)
        return self._working(task_id, row, view)

    async def get(self, ctx: ToolContext, task_id: str) -> dict[str, Any]:
        """`tasks/get`: the task as it is now (`DetailedTask`), finished first if its delegation was decided."""
        row = await self._row(ctx, task_id)
        if row.status == WORKING:
            view = await ctx.delegations.get(row.delegation_id, connection_id=row.connection_id)
            if view.status == DelegationStatus.PENDING:
                return self._working(task_id, row, view)
            row = await self._finish(ctx, row, view)
        return self._detailed(task_id, row)

    async def cancel(self, ctx: ToolContext, task_id: str) -> None:
        """`tasks/cancel`: withdraw the delegation (revoke it, should an approval have landed first); idempotent."""
        row = await self._row(ctx, task_id)
        if row.status != WORKING:
            return  # terminal tasks never change
        view = await ctx.delegations.withdraw(row.delegation_id, connection_id=row.connection_id)
        await self._finish(ctx, row, view, cancelled=True)

    async def update(self, ctx: ToolContext, task_id: str) -> None:
        """`tasks/update`: acknowledged; Vouchsim never asks for input, so any `inputResponses` are ignored."""
        await self._row(ctx, task_id)

    # -- plumbing -----------------------------------------------------------------------------------------------
    async def _row(self, ctx: ToolContext, task_id: str) -> McpTask:
        if not task_id.startswith(TASK_ID_PREFIX) or len(task_id) > MAX_TASK_ID_LENGTH:
            raise InvalidParams("Failed to retrieve task: Task not found")
        async with ctx.transaction() as db:
            row = await McpTaskRepository(db).get(hash_secret(task_id))
        grant = ctx.grant
        if row is None or (row.user_id, row.client_id, row.connection_id) != (
            grant.user_id,
            grant.client_id,
            grant.connection_id,
        ):
            raise InvalidParams("Failed to retrieve task: Task not found")  # someone else's: as good as absent
        if as_utc(row.expires_at) <= self.clock.now():
            raise InvalidParams("Failed to retrieve task: Task has expired")
        return row

    async def _finish(
        self, ctx: ToolContext, row: McpTask, view: DelegationView, *, cancelled: bool = False
    ) -> McpTask:
        """Freeze the outcome of a decided delegation (compare-and-swap: the first poll to see it wins)."""
        now = self.clock.now()
        withdrawn = view.status == DelegationStatus.CANCELLED or (cancelled and view.status == DelegationStatus.REVOKED)
        sealed = None
        if not withdrawn:
            result = protocol.modern_result((await answer(ctx, view)).render(ctx.protocol_version))
            sealed = seal(self.seal_key, SEAL_PURPOSE, json.dumps(result).encode())
        async with ctx.transaction() as db:
            tasks = McpTaskRepository(db)
            await tasks.finish(
                row.id,
                status=CANCELLED if withdrawn else COMPLETED,
                result_sealed=sealed,
                now=now,
                expires_at=now + RESULT_RETENTION,
            )
            finished = await tasks.get(row.id)
        assert finished is not None
        return finished

    def _base(self, task_id: str, row: McpTask) -> dict[str, Any]:
        created, expires = as_utc(row.created_at), as_utc(row.expires_at)
        return {
            "taskId": task_id,
            "status": row.status,
            "createdAt": isoformat(created),
            "lastUpdatedAt": isoformat(as_utc(row.last_updated_at)),
            "ttlMs": _milliseconds(expires - created),
        }

    def _working(self, task_id: str, row: McpTask, view: DelegationView) -> dict[str, Any]:
        until_expiry = _milliseconds(view.expires_at - self.clock.now())
        return {
            **self._base(task_id, row),
            "status": WORKING,
            "statusMessage": waiting_message(view),
            # A decision shows on the next poll; past the delegation's expiry there is nothing left to wait for.
            "pollIntervalMs": max(MIN_POLL_INTERVAL_MS, min(POLL_INTERVAL_MS, until_expiry)),
        }

    def _detailed(self, task_id: str, row: McpTask) -> dict[str, Any]:
        task = self._base(task_id, row)
        if row.status == CANCELLED:
            return {**task, "statusMessage": "The request was withdrawn before the user decided."}
        if row.status != COMPLETED or row.result_sealed is None:
            raise InternalError(f"Task in an unexpected state {row.status!r}.")
        opened = unseal(self.seal_key, SEAL_PURPOSE, row.result_sealed)
        if opened is None:
            raise InternalError("The task's result cannot be read with this server's key.")
        result: dict[str, Any] = json.loads(opened)
        content = result.get("content") or [{}]
        return {**task, "statusMessage": content[-1].get("text", ""), "result": result}


def _milliseconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))
