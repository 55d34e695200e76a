"""Racing decisions on one pairing, each in its own session and transaction as concurrent requests are.

A barrier holds every racer until all have read the pairing, so each acts on the same state and only the
compare-and-swap can tell them apart: exactly one may win.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.tests.pairing_support import (
    BROWSER_SECRET,
    HMAC_KEY,
    ISSUER,
    SeededDevice,
    SeededRequest,
    seed_device,
    seed_request,
)
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.pairing.errors import (
    PairingAlreadyClaimed,
    PairingBurnt,
    PairingClosed,
    PairingConflict,
    PairingDeclined,
    WrongPairingCode,
)
from vouchsim.server.pairing.service import PairingService, StartedPairing
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import PairingSession
from vouchsim.server.storage.repositories.pairings import AttemptReservation, PairingRepository

pytestmark = pytest.mark.anyio


class RacingPairings(PairingRepository):
    """Waits at the barrier before its first write, after the service has read the pairing."""

    def __init__(self, session: AsyncSession, barrier: asyncio.Barrier | None) -> None:
        super().__init__(session)
        self.barrier = barrier

    async def _line_up(self) -> None:
        if self.barrier is not None:
            barrier, self.barrier = self.barrier, None
            await asyncio.wait_for(barrier.wait(), timeout=10)

    async def update_if(self, pairing_id: str, **kwargs: Any) -> bool:
        await self._line_up()
        return await super().update_if(pairing_id, **kwargs)

    async def reserve_attempt(
        self, pairing_id: str, *, status_in: Collection[str], max_attempts: int, now: datetime
    ) -> AttemptReservation | None:
        await self._line_up()
        return await super().reserve_attempt(pairing_id, status_in=status_in, max_attempts=max_attempts, now=now)


Step = Callable[[PairingService], Awaitable[object]]


class Arena:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings) -> None:
        self.sessions = sessions
        self.clock = clock
        self.settings = settings

    async def run(self, step: Step, barrier: asyncio.Barrier | None = None) -> object:
        """One request: its own session and transaction, committed even when it answers with an error."""
        async with self.sessions() as session, session.begin():
            service = PairingService(RacingPairings(session, barrier), self.clock, self.settings, HMAC_KEY)
            try:
                return await step(service)
            except VouchsimError as error:
                return error

    async def race(self, *steps: Step) -> list[object]:
        barrier = asyncio.Barrier(len(steps))
        return list(await asyncio.gather(*(self.run(step, barrier) for step in steps)))

    async def status(self, pairing_id: str) -> Mapping[str, Any]:
        async with self.sessions() as session:
            row = await session.scalar(select(PairingSession).where(PairingSession.id == pairing_id))
            assert row is not None
            return {"status": row.status, "failed_attempts": row.failed_attempts}


@pytest.fixture
def arena(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings) -> Arena:
    return Arena(sessions, clock, settings)


@pytest.fixture
async def world(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, arena: Arena
) -> tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]:
    async with sessions() as session, session.begin():
        request = await seed_request(session, clock)
        phone = await seed_device(session, clock, "phone")
        other = await seed_device(session, clock, "other")
    started = await arena.run(lambda service: service.start(request.request_id, BROWSER_SECRET, ISSUER))
    assert isinstance(started, StartedPairing)
    return request, started, phone, other


def winners(results: list[object]) -> list[object]:
    return [result for result in results if not isinstance(result, Exception)]


async def test_two_devices_claim_at_once(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    _, started, phone, other = world
    results = await arena.race(
        lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER),
        lambda service: service.claim(other.device_id, started.qr_payload, ISSUER),
    )
    assert len(winners(results)) == 1
    assert [type(result) for result in results if isinstance(result, Exception)] == [PairingAlreadyClaimed]


async def test_approve_and_decline_at_once(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    _, started, phone, _ = world
    await arena.run(lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER))
    results = await arena.race(
        lambda service: service.approve(phone.device_id, started.pairing_id),
        lambda service: service.decline(phone.device_id, started.pairing_id),
    )
    assert len(winners(results)) == 1
    approved, declined = results
    final = (await arena.status(started.pairing_id))["status"]
    if isinstance(approved, Exception):
        assert isinstance(approved, PairingClosed)
        assert final == "declined"
    else:
        assert isinstance(declined, PairingConflict)
        assert final == "approved"


async def test_approve_twice_at_once_issues_one_code(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    request, started, phone, _ = world
    await arena.run(lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER))
    await arena.run(lambda service: service.approve(phone.device_id, started.pairing_id))
    results = await arena.race(
        lambda service: service.approve(phone.device_id, started.pairing_id),
        lambda service: service.approve(phone.device_id, started.pairing_id),
    )
    issued = winners(results)
    assert len(issued) == 1
    assert [type(result) for result in results if isinstance(result, Exception)] == [PairingConflict]
    code = issued[0].pairing_code  # type: ignore[attr-defined]
    done = await arena.run(lambda service: service.submit_code(started.pairing_id, request.browser_session_id, code))
    assert not isinstance(done, Exception)


async def test_decline_on_the_device_and_the_right_code_on_the_page_at_once(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    request, started, phone, _ = world
    await arena.run(lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER))
    issued = await arena.run(lambda service: service.approve(phone.device_id, started.pairing_id))
    code = issued.pairing_code  # type: ignore[attr-defined]
    results = await arena.race(
        lambda service: service.decline(phone.device_id, started.pairing_id),
        lambda service: service.submit_code(started.pairing_id, request.browser_session_id, code),
    )
    assert len(winners(results)) == 1
    declined, submitted = results
    final = (await arena.status(started.pairing_id))["status"]
    if isinstance(submitted, Exception):
        assert isinstance(submitted, PairingDeclined)
        assert final == "declined"
    else:
        assert isinstance(declined, PairingClosed)
        assert final == "completed"


async def test_two_browsers_submit_the_right_code_at_once(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    request, started, phone, _ = world
    await arena.run(lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER))
    issued = await arena.run(lambda service: service.approve(phone.device_id, started.pairing_id))
    code = issued.pairing_code  # type: ignore[attr-defined]
    submit: Step = lambda service: service.submit_code(started.pairing_id, request.browser_session_id, code)  # noqa: E731
    results = await arena.race(submit, submit)
    assert len(winners(results)) == 1
    assert [type(result) for result in results if isinstance(result, Exception)] == [PairingClosed]


async def test_a_flood_of_guesses_checks_no_more_than_the_limit(
    arena: Arena, world: tuple[SeededRequest, StartedPairing, SeededDevice, SeededDevice]
) -> None:
    request, started, phone, _ = world
    await arena.run(lambda service: service.claim(phone.device_id, started.qr_payload, ISSUER))
    issued = await arena.run(lambda service: service.approve(phone.device_id, started.pairing_id))
    code = issued.pairing_code.replace("-", "")  # type: ignore[attr-defined]
    wrong = "B" * 8 if code != "B" * 8 else "C" * 8
    guess: Step = lambda service: service.submit_code(started.pairing_id, request.browser_session_id, wrong)  # noqa: E731
    results = await arena.race(*[guess] * 8)
    kinds = sorted(type(result).__name__ for result in results)
    assert kinds.count("WrongPairingCode") == 4
    assert kinds.count("PairingBurnt") == 4
    assert all(isinstance(result, WrongPairingCode | PairingBurnt) for result in results)
    assert await arena.status(started.pairing_id) == {"status": "burnt", "failed_attempts": 5}
