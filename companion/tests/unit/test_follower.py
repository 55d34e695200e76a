"""The core's one follower and decision policy (companion.core.follower), which `watch`, the TUI, the side-car and
`TrustedDevice` all stand on: the stream is followed (never polled), reconnected with backoff, and each pending
delegation is decided once, by policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from companion.tests.fakes import ISSUER, FakeDeviceServer, error, sample_delegation
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.errors import InvalidSignatureError
from vouchsim.companion.core.follower import (
    AutoDecider,
    Backoff,
    DelegationFollower,
    LinkEvent,
    Outcome,
    decide_as_they_come,
    policy_for,
)
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.rules import parse_rules
from vouchsim.companion.core.schemas import Delegation

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def device_of(server: FakeDeviceServer, state_dir: Path) -> AsyncIterator[DeviceApiClient]:
    async with httpx.AsyncClient(base_url=ISSUER, transport=server.transport) as http:
        device = DeviceApiClient(http, Keystore(state_dir))
        await device.enrol("Pixel of QA")
        yield device


class Sleeps:
    """The follower's sleep between reconnections: recorded, and instant."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_reset() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_policies_approve_all_deny_all_or_by_rules() -> None:
    delegation = sample_delegation()
    assert policy_for("approve-all")(delegation) == ("approve", "approve-all")
    assert policy_for("deny-all")(delegation) == ("deny", "deny-all")
    rules = parse_rules('default = "leave"\n[[rule]]\naudience = "aud_test_*"\ndecision = "deny"\n')
    assert policy_for(rules)(delegation) == ("deny", "rule 1")
    assert policy_for(rules)(sample_delegation(audience_id="aud_prod")) == ("leave", "no rule matched, default leave")
    with pytest.raises(ValueError, match="approve-all"):
        policy_for("approve-some")  # type: ignore[arg-type]


async def test_the_follower_reconnects_with_backoff_and_reports_its_link(
    server: FakeDeviceServer, state_dir: Path
) -> None:
    server.stream_connects = [httpx.ConnectError("Connection refused"), "drop", "end", "follow"]
    first = server.add_delegation()
    events: list[LinkEvent] = []
    seen: list[str] = []
    sleeps = Sleeps()

    async def handle(delegation: Delegation) -> bool:
        seen.append(delegation.delegation_id)
        return len(seen) == 2  # the replay after "end", then again after reconnecting: stop there

    async with device_of(server, state_dir) as device:
        follower = DelegationFollower(device, on_link=events.append, sleep=sleeps)
        await asyncio.wait_for(follower.run(handle), 5)

    assert seen == [first["delegation_id"]] * 2  # each stream replays what is pending
    assert sleeps.delays == [0.5, 0.5, 0.5]  # it opened in between each time: the backoff started again
    states = [(e.state, e.reconnected) for e in events]
    assert states == [
        ("connecting", False),
        ("offline", False),
        ("connecting", False),
        ("online", False),  # "drop": accepted, then broken
        ("offline", False),
        ("connecting", False),
        ("online", True),  # "end": the server closed it
        ("offline", False),
        ("connecting", False),
        ("online", True),
    ]
    offline = [e for e in events if e.state == "offline"]
    assert offline[0].problem == "Could not connect to the server at http://127.0.0.1:8741."
    assert offline[0].retry_in == 0.5
    assert "Connection reset by peer" in offline[1].problem
    assert offline[2].problem == "The server closed the delegation stream."
    assert server.streams_opened == 4


async def test_a_refusal_is_raised_not_retried(server: FakeDeviceServer, state_dir: Path) -> None:
    server.stream_connects = [error(503, "unavailable"), error(401, "invalid_signature")]
    sleeps = Sleeps()

    async def handle(delegation: Delegation) -> bool:
        raise AssertionError("nothing to hand over")

    async with device_of(server, state_dir) as device:
        with pytest.raises(InvalidSignatureError):
            await DelegationFollower(device, sleep=sleeps).run(handle)
    assert sleeps.delays == [0.5]  # the 503 was waited out; the 401 was not


async def test_the_decider_decides_each_pending_delegation_once(server: FakeDeviceServer, state_dir: Path) -> None:
    record = server.add_delegation()
    outcomes: list[Outcome] = []
    async with device_of(server, state_dir) as device:
        decider = AutoDecider(device, policy_for("approve-all"), on_outcome=outcomes.append)
        delegation = (await device.delegations("pending"))[0]
        first = await decider.consider(delegation)
        assert await decider.consider(delegation) is None  # a replay of what was handled already
        assert await decider.consider((await device.delegations("all"))[0]) is None  # no longer pending
    assert first is not None and first.decided
    assert first.line == "approved dlg_1 aud_test_payments payments.identity,payments.prepare (approve-all)"
    assert outcomes == [first]
    assert record["status"] == "approved"
    assert decider.decided == 1


async def test_ask_goes_to_the_person_or_is_left_pending(server: FakeDeviceServer, state_dir: Path) -> None:
    server.add_delegation()
    server.add_delegation(audience_id="aud_test_files")
    rules = parse_rules('default = "ask"\n')
    asked: list[str] = []

    async def ask(delegation: Delegation) -> str:
        asked.append(delegation.delegation_id)
        return "deny"

    async with device_of(server, state_dir) as device:
        pending = await device.delegations("pending")
        by_person = await AutoDecider(device, policy_for(rules), ask=ask).consider(pending[0])  # type: ignore[arg-type]
        unasked = await AutoDecider(device, policy_for(rules), unasked="no terminal").consider(pending[1])
    assert by_person is not None and (by_person.verb, by_person.reason) == ("denied", "asked")
    assert asked == [pending[0].delegation_id]
    assert unasked is not None and unasked.verb == "left"
    assert unasked.reason == "no rule matched, default ask; no terminal; still pending"


async def test_a_delegation_decided_elsewhere_first_is_skipped(server: FakeDeviceServer, state_dir: Path) -> None:
    server.add_delegation()
    server.before_decision = lambda record: record.update(status="denied")  # another device was quicker
    async with device_of(server, state_dir) as device:
        delegation = (await device.delegations("pending"))[0]
        outcome = await AutoDecider(device, policy_for("approve-all")).consider(delegation)
    assert outcome is not None and (outcome.verb, outcome.reason) == ("skipped", "no longer pending: denied")


async def test_decide_as_they_come_follows_new_requests_without_polling(
    server: FakeDeviceServer, state_dir: Path
) -> None:
    async with device_of(server, state_dir) as device:
        decider = AutoDecider(device, policy_for("approve-all"))
        online = asyncio.Event()

        def link(event: LinkEvent) -> None:
            if event.state == "online":
                online.set()

        watching = asyncio.create_task(decide_as_they_come(decider, once=True, on_link=link))
        await asyncio.wait_for(online.wait(), 5)
        record = server.add_delegation()  # announced on the open stream
        await asyncio.wait_for(watching, 5)
    assert record["status"] == "approved"
    listings = [r for r in server.requests if r.url.path == "/device/delegations"]
    assert listings == []  # nothing was polled: the stream brought it
