"""Server-sent events: the `text/event-stream` parsing rules of the WHATWG HTML standard (§9.2.6).

Lines arrive already split (httpx splits on `\\r\\n`, `\\n` and `\\r`). A blank line dispatches the event
collected so far; a line starting with `:` is a comment (the server's `: keep-alive`); `data` lines join
with `\\n`; one space after the colon is dropped; an event without data is never dispatched, and neither
is a last event the stream ended before its blank line.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

DEFAULT_EVENT = "message"


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseDecoder:
    """Feed it lines one at a time; it returns an event when a blank line completes one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._first_line = True

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, line: str) -> SseEvent | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # `retry` and unknown fields are ignored: reconnecting is the caller's business.
        return None

    def _dispatch(self) -> SseEvent | None:
        event, data = self._event or DEFAULT_EVENT, self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseEvent(event=event, data="\n".join(data), id=self._last_id)


async def parse_events(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    decoder = SseDecoder()
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
