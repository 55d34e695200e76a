"""Server-sent events parsing (WHATWG HTML §9.2.6), as the delegation stream needs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vouchsim.companion.core.sse import SseDecoder, SseEvent, parse_events


def feed(lines: list[str]) -> list[SseEvent]:
    decoder = SseDecoder()
    return [event for line in lines if (event := decoder.feed(line)) is not None]


def test_an_event_is_dispatched_by_a_blank_line() -> None:
    assert feed(["event: delegation", 'data: {"a":1}']) == []
    assert feed(["event: delegation", 'data: {"a":1}', ""]) == [SseEvent("delegation", '{"a":1}')]


def test_comments_are_ignored() -> None:
    assert feed([": keep-alive", "", ":", "event: delegation", ": in between", "data: x", ""]) == [
        SseEvent("delegation", "x")
    ]


def test_data_lines_join_with_newlines() -> None:
    assert feed(["data: one", "data:two", "data:", ""]) == [SseEvent("message", "one\ntwo\n")]


def test_only_one_leading_space_is_dropped() -> None:
    assert feed(["event:delegation", "data:   x ", ""]) == [SseEvent("delegation", "  x ")]


def test_the_event_type_resets_after_each_dispatch() -> None:
    events = feed(["event: delegation", "data: 1", "", "data: 2", ""])
    assert [e.event for e in events] == ["delegation", "message"]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert feed(["event: delegation", "", "event: other", "data: x", ""]) == [SseEvent("other", "x")]


def test_ids_carry_over_and_other_fields_are_ignored() -> None:
    decoder = SseDecoder()
    lines = ["id: 7", "retry: 1000", "bogus: y", "data", "data: x", ""]
    events = [e for line in lines if (e := decoder.feed(line)) is not None]
    assert events == [SseEvent("message", "\nx", id="7")]  # a bare `data` line is an empty data line
    assert decoder.feed("data: y") is None
    assert decoder.feed("") == SseEvent("message", "y", id="7")
    assert decoder.last_event_id == "7"


def test_a_byte_order_mark_is_dropped_from_the_first_line() -> None:
    assert feed(["\ufeffevent: delegation", "data: x", ""]) == [SseEvent("delegation", "x")]
    assert feed(["data: x", "\ufeffevent: late", "data: y", ""])[0].event == "message"


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


@pytest.mark.anyio
async def test_parse_events_drops_an_unfinished_last_event() -> None:
    events = [e async for e in parse_events(lines("event: delegation", "data: 1", "", "data: cut"))]
    assert events == [SseEvent("delegation", "1")]
