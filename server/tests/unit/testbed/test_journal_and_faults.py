"""The journal (bounded, filtered, paged, waited on) and the fault wire types (validation, matching)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from vouchsim.server.core.clock import FrozenClock, OffsetClock, real_now
from vouchsim.server.storage.models import Base
from vouchsim.server.storage.repositories.testbed import _WIPED, KEPT
from vouchsim.server.testbed.faults import Fault, FaultAction, FaultMatch, FaultRequest
from vouchsim.server.testbed.journal import Journal, split_kinds
from vouchsim.server.testbed.observe import RequestFacts

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def record(journal: Journal, kind: str = "token", client_id: str | None = "vsc_1", seconds: int = 0) -> int:
    entry = journal.record(
        at=T0 + timedelta(seconds=seconds),
        kind=kind,
        method="POST",
        path="/oauth/token",
        status=200,
        duration_ms=1.234,
        client_id=client_id,
        summary={},
        fault=None,
    )
    return entry.id


def test_the_journal_keeps_the_newest_entries_and_numbers_them() -> None:
    journal = Journal(size=3)
    ids = [record(journal, seconds=n) for n in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert [entry.id for entry in journal.query()] == [3, 4, 5]
    journal.clear()
    assert journal.query() == [] and record(journal) == 6  # numbering goes on


def test_the_journal_filters_and_pages() -> None:
    journal = Journal()
    record(journal, "discovery", None, 0)
    record(journal, "token", "a", 1)
    record(journal, "mcp", "b", 2)
    record(journal, "mcp", "a", 3)
    assert [e.id for e in journal.query(client_id="a")] == [2, 4]
    assert [e.id for e in journal.query(kinds=["mcp", "discovery"])] == [1, 3, 4]
    assert [e.id for e in journal.query(since_id=2)] == [3, 4]
    assert [e.id for e in journal.query(since_at=T0 + timedelta(seconds=2))] == [3, 4]
    assert [e.id for e in journal.query(limit=2)] == [3, 4]  # the newest two, oldest first
    assert [e.id for e in journal.query(since_id=1, limit=2)] == [2, 3]  # paging forward
    assert split_kinds(["token,mcp", " device "]) == ["token", "mcp", "device"]
    wire = msgspec.json.decode(msgspec.json.encode(journal.query(limit=1)[0]))
    assert set(wire) == {"id", "at", "kind", "method", "path", "status", "duration_ms", "client_id", "summary", "fault"}
    assert wire["at"] == "2026-11-25T12:00:03Z" and wire["duration_ms"] == 1.23


@pytest.mark.anyio
async def test_a_long_poll_returns_when_an_entry_arrives() -> None:
    journal = Journal()
    waiting = asyncio.create_task(journal.wait(journal.last_id, 30))
    await asyncio.sleep(0)
    assert not waiting.done()
    record(journal)
    await asyncio.wait_for(waiting, 5)  # a hang guard, not a timing check
    await journal.wait(0, 30)  # something newer than 0 exists: returns at once


def test_the_offset_clock_moves_what_expires_and_keeps_real_time_for_transport() -> None:
    base = FrozenClock(T0)
    clock = OffsetClock(base)
    clock.set_offset(3601)
    assert clock.now() == T0 + timedelta(seconds=3601) and clock.offset_seconds == 3601
    assert real_now(clock) == T0 and real_now(base) == T0


def test_reset_wipes_every_table_but_the_kept_ones() -> None:
    """A table added later must be named here one way or the other, or a reset would leave its rows."""
    wiped = {model.__tablename__ for model in _WIPED}
    assert wiped.isdisjoint(KEPT)
    assert set(Base.metadata.tables) == wiped | (set(KEPT) - {"alembic_version"})


# -- faults ------------------------------------------------------------------------------------------------------


def parse(body: object) -> FaultRequest:
    return msgspec.convert(body, FaultRequest)


def test_a_fault_request_defaults_to_one_firing_and_null_means_until_deleted() -> None:
    assert parse({"action": {"status": 503}}).times == 1
    assert parse({"action": {"status": 503}, "times": None}).times is None
    assert parse({"match": {"kind": "mcp"}, "action": {"drop": True}, "times": 3}).times == 3
    assert parse({"action": {"delay_ms": 10, "status": 500}}).action.error_code == "server_error"
    assert FaultAction(status=503).error_code == "temporarily_unavailable"
    assert FaultAction(status=400).error_code == "invalid_request"
    assert FaultAction(status=400, error="invalid_grant").error_code == "invalid_grant"


@pytest.mark.parametrize(
    "body",
    [
        {"action": {}},
        {"action": {"status": 200}},
        {"action": {"status": 503, "drop": True}},
        {"action": {"drop": False}},
        {"action": {"expire_token": True, "status": 401}},
        {"action": {"retry_after": 3}},
        {"action": {"status": 503}, "times": 0},
        {"action": {"status": 503}, "extra": 1},
        {"match": {"kind": "teapot"}, "action": {"status": 503}},
        {"match": {"colour": "red"}, "action": {"status": 503}},
        {"match": {"kind": "token"}, "action": {"expire_token": True}},
        {"match": {"kind": "mcp", "grant_type": "refresh_token"}, "action": {"status": 400}},
        {"match": {"kind": "token", "tool": "identity_get"}, "action": {"status": 400}},
        {"action": {"status": 400, "error": 'bad"quote'}},
        {"action": {"delay_ms": -1}},
    ],
)
def test_malformed_faults_are_refused(body: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        parse(body)


def fault(match: FaultMatch, action: FaultAction | None = None, remaining: int | None = 1) -> Fault:
    return Fault(
        id="flt_1",
        match=match,
        action=action or FaultAction(status=503),
        times=1,
        remaining=remaining,
        fired=0,
        created_at=T0,
    )


def test_every_key_of_a_match_must_hold() -> None:
    refresh = RequestFacts(kind="token", method="POST", path="/oauth/token", grant_type="refresh_token")
    call = RequestFacts(kind="mcp", method="POST", path="/mcp", mcp_method="tools/call", tool="identity_get")
    assert FaultMatch().holds_for(refresh, None)
    assert FaultMatch(kind="token", grant_type="refresh_token").holds_for(refresh, None)
    assert not FaultMatch(kind="token", grant_type="authorization_code").holds_for(refresh, None)
    assert FaultMatch(mcp_method="tools/call", tool="identity_get").holds_for(call, None)
    assert not FaultMatch(tool="delegation_request").holds_for(call, None)
    assert FaultMatch(client_id="a").holds_for(call, "a") and not FaultMatch(client_id="a").holds_for(call, "b")
    assert not fault(FaultMatch(), remaining=0).applies_to(call)
    assert not fault(FaultMatch(), FaultAction(expire_token=True)).applies_to(call)  # no bearer token sent
    call.bearer = "vsat_x"
    assert fault(FaultMatch(), FaultAction(expire_token=True), remaining=None).applies_to(call)
