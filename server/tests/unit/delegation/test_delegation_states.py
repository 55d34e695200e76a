"""The delegation state machine of docs/delegations.md, edge by edge."""

from __future__ import annotations

import pytest

from vouchsim.server.delegation.states import (
    FINAL,
    TRANSITIONS,
    DelegationEvent,
    DelegationStatus,
    next_status,
    sources,
)

S, E = DelegationStatus, DelegationEvent

EDGES = [
    (S.PENDING, E.APPROVE, S.APPROVED),
    (S.PENDING, E.DENY, S.DENIED),
    (S.PENDING, E.TIME, S.EXPIRED),
    (S.PENDING, E.CANCEL, S.CANCELLED),
    (S.APPROVED, E.REVOKE, S.REVOKED),
]


@pytest.mark.parametrize(("current", "event", "target"), EDGES)
def test_every_edge_of_the_diagram(current: DelegationStatus, event: DelegationEvent, target: DelegationStatus) -> None:
    assert next_status(current, event) is target


def test_there_are_no_other_edges() -> None:
    assert set(TRANSITIONS) == {(current, event) for current, event, _ in EDGES}
    for current in DelegationStatus:
        for event in DelegationEvent:
            if (current, event) not in TRANSITIONS:
                assert next_status(current, event) is None


def test_final_states_have_no_way_out() -> None:
    assert {S.DENIED, S.EXPIRED, S.CANCELLED, S.REVOKED} == FINAL
    for status in FINAL:
        assert all(next_status(status, event) is None for event in DelegationEvent)


def test_an_approval_can_only_be_revoked() -> None:
    assert [event for event in DelegationEvent if next_status(S.APPROVED, event)] == [E.REVOKE]


def test_sources_are_the_compare_and_swap_guards() -> None:
    assert sources(E.APPROVE) == {S.PENDING}
    assert sources(E.TIME) == {S.PENDING}
    assert sources(E.REVOKE) == {S.APPROVED}
