"""Racing changes to one delegation, each in its own session and transaction as concurrent requests are.

A barrier holds every racer at its compare-and-swap until all have read the delegation, so each acts on the
same state and only the `UPDATE … WHERE status = …` can tell them apart: exactly one may win.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any

import pytest

from server.tests.delegation_support import World, ask, decide
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.delegation.errors import DelegationClosed
from vouchsim.server.delegation.schemas import DelegationView
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.storage.repositories.delegations import DelegationRepository
from vouchsim.server.storage.session import DbSession

pytestmark = pytest.mark.anyio

Step = Callable[[DelegationService], Awaitable[DelegationView]]


class RacingDelegations(DelegationRepository):
    """Waits at the barrier before its first compare-and-swap, after the service has read the delegation."""

    def __init__(self, session: DbSession, barrier: asyncio.Barrier, arena: Arena) -> None:
        super().__init__(session)
        self.barrier: asyncio.Barrier | None = barrier
        self.arena = arena

    async def update_if(
        self,
        delegation_id: str,
        *,
        status_in: Collection[str],
        changes: Mapping[str, Any],
        due_by: datetime | None = None,
        live_at: datetime | None = None,
        notices: list[str] | None = None,
        remember: Any = None,
    ) -> bool:
        if self.barrier is not None:
            barrier, self.barrier = self.barrier, None
            self.arena.first_arrived.set()
            await asyncio.wait_for(barrier.wait(), timeout=10)
        won = await super().update_if(
            delegation_id,
            status_in=status_in,
            changes=changes,
            due_by=due_by,
            live_at=live_at,
            notices=notices,
            remember=remember,
        )
        if won:
            self.arena.wins.append(str(changes["status"]))
        return won


class Arena:
    def __init__(self, make_service: Any) -> None:
        self.make_service = make_service
        self.first_arrived = asyncio.Event()
        self.wins: list[str] = []  # the status each winning compare-and-swap wrote

    async def race(self, *steps: Step) -> list[DelegationView | VouchsimError]:
        barrier = asyncio.Barrier(len(steps))

        async def run(step: Step) -> DelegationView | VouchsimError:
            service = self.make_service(repository=lambda s: RacingDelegations(s, barrier, self))
            try:
                return await step(service)
            except VouchsimError as error:
                return error

        return list(await asyncio.gather(*(run(step) for step in steps)))


@pytest.fixture
def arena(make_service: Any) -> Arena:
    return Arena(make_service)


async def status_of(service: DelegationService, world: World, view: DelegationView) -> str:
    return (await service.get(view.delegation_id, connection_id=world.runtime.connection_id)).status


async def test_approve_and_deny_at_once(arena: Arena, service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    results = await arena.race(
        lambda s: decide(s, world.phone, view, "approve"),
        lambda s: decide(s, world.phone, view, "deny"),
    )
    won = [r for r in results if isinstance(r, DelegationView)]
    lost = [r for r in results if isinstance(r, DelegationClosed)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].delegation_status == won[0].status == await status_of(service, world, view)
    assert arena.wins == [won[0].status]


async def test_a_double_tap_approves_once(arena: Arena, service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    results = await arena.race(*(lambda s: decide(s, world.phone, view) for _ in range(3)))
    assert sum(isinstance(r, DelegationView) for r in results) == 1
    assert sum(isinstance(r, DelegationClosed) for r in results) == 2
    assert arena.wins == ["approved"]


async def test_approve_and_the_agents_withdrawal_at_once(
    arena: Arena, service: DelegationService, world: World
) -> None:
    view = await ask(service, world.runtime)
    approval, withdrawal = await arena.race(
        lambda s: decide(s, world.phone, view),
        lambda s: s.withdraw(view.delegation_id, connection_id=world.runtime.connection_id),
    )
    assert isinstance(withdrawal, DelegationView)
    final = await status_of(service, world, view)
    if isinstance(approval, DelegationClosed):
        # The withdrawal took the pending delegation: cancelled, and the approval never landed.
        assert approval.delegation_status == final == withdrawal.status == "cancelled"
        assert arena.wins == ["cancelled"]
    else:
        # The approval took it; the withdrawal then revoked it: never approved *and* cancelled.
        assert isinstance(approval, DelegationView) and approval.status == "approved"
        assert final == withdrawal.status == "revoked"
        assert arena.wins == ["approved", "revoked"]  # the revocation came after, on the approved row
    now = await service.get(view.delegation_id, connection_id=world.runtime.connection_id)
    assert await service.token(now, issuer="https://vouch.test") is None


async def test_approve_and_expiry_at_once(
    arena: Arena, service: DelegationService, world: World, clock: FrozenClock
) -> None:
    view = await ask(service, world.runtime)
    clock.advance(299)

    async def expire(s: DelegationService) -> DelegationView:
        await arena.first_arrived.wait()  # the approval has read the delegation, still live, and waits
        clock.advance(1)
        return await s.get(view.delegation_id, connection_id=world.runtime.connection_id)

    approval, reader = await arena.race(lambda s: decide(s, world.phone, view), expire)
    final = await status_of(service, world, view)
    assert isinstance(reader, DelegationView)
    if isinstance(approval, DelegationClosed):
        assert approval.delegation_status == final == reader.status == "expired"
    else:
        assert isinstance(approval, DelegationView)
        assert approval.status == final == reader.status == "approved"
    assert arena.wins == [final]


async def test_device_revocation_and_agent_withdrawal_at_once(
    arena: Arena, service: DelegationService, world: World
) -> None:
    view = await decide(service, world.phone, await ask(service, world.runtime))
    results = await arena.race(
        lambda s: s.revoke_by_device(user_id=world.phone.user_id, delegation_id=view.delegation_id),
        lambda s: s.withdraw(view.delegation_id, connection_id=world.runtime.connection_id),
    )
    assert all(isinstance(r, DelegationView) and r.status == "revoked" for r in results)
    assert arena.wins == ["revoked"]  # both answer revoked; one of them revoked it
