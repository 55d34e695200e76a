"""The pairing state machine: every edge of the diagram in `server.pairing.states`, and nothing else."""

from __future__ import annotations

import pytest

from vouchsim.server.pairing.states import (
    FINAL,
    OPEN,
    TRANSITIONS,
    PairingEvent,
    PairingStatus,
    next_status,
    sources,
)

S, E = PairingStatus, PairingEvent

EXPECTED = {
    (S.WAITING, E.CLAIM): S.CLAIMED,
    (S.CLAIMED, E.APPROVE): S.APPROVED,
    (S.APPROVED, E.APPROVE): S.APPROVED,
    (S.APPROVED, E.CODE_OK): S.COMPLETED,
    (S.CLAIMED, E.DECLINE): S.DECLINED,
    (S.APPROVED, E.DECLINE): S.DECLINED,
    (S.WAITING, E.TIME): S.EXPIRED,
    (S.CLAIMED, E.TIME): S.EXPIRED,
    (S.APPROVED, E.TIME): S.EXPIRED,
    (S.WAITING, E.LAST_WRONG_CODE): S.BURNT,
    (S.CLAIMED, E.LAST_WRONG_CODE): S.BURNT,
    (S.APPROVED, E.LAST_WRONG_CODE): S.BURNT,
}


def test_the_table_is_the_diagram() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("event", list(E))
def test_every_pair_of_state_and_event(status: PairingStatus, event: PairingEvent) -> None:
    assert next_status(status, event) == EXPECTED.get((status, event))


def test_final_states_have_no_way_out() -> None:
    assert {S.COMPLETED, S.DECLINED, S.EXPIRED, S.BURNT} == FINAL
    assert {S.WAITING, S.CLAIMED, S.APPROVED} == OPEN
    assert all(status not in FINAL for status, _ in TRANSITIONS)


def test_sources_are_the_compare_and_swap_guards() -> None:
    assert sources(E.CLAIM) == {S.WAITING}
    assert sources(E.APPROVE) == {S.CLAIMED, S.APPROVED}
    assert sources(E.DECLINE) == {S.CLAIMED, S.APPROVED}
    assert sources(E.CODE_OK) == {S.APPROVED}
    assert sources(E.TIME) == OPEN
    assert sources(E.LAST_WRONG_CODE) == OPEN


def test_statuses_are_their_wire_strings() -> None:
    assert [status.value for status in S] == [
        "waiting",
        "claimed",
        "approved",
        "completed",
        "declined",
        "expired",
        "burnt",
    ]
