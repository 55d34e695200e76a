"""The request journal: what clients sent and what they got, newest last, bounded, in this process.

It is per instance: each server process keeps its own (with `--workers N`, a request is in the journal of the
worker that served it, and `GET /testbed/journal` answers from the worker it reaches; the response names that
worker in `Vouchsim-Testbed-Instance`). Entries are numbered per instance in the order they were completed;
`since=<id>` pages forward from one, and `wait` turns a read that finds nothing new into a long poll.
Nothing here is a secret: summaries are masked before they arrive (`server.testbed.observe`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import msgspec

from vouchsim.server.core.clock import as_utc

DEFAULT_SIZE = 10_000
MAX_WAIT = 30.0  # seconds a long poll may be held


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One request to a journaled endpoint (docs: README "Testbed controls")."""

    id: int
    at: datetime  # when it arrived, on the server's clock (the testbed's, offset included), UTC
    kind: str
    method: str
    path: str
    status: int | None  # None: the connection was dropped without an answer
    duration_ms: float
    client_id: str | None
    summary: dict[str, Any]
    fault: str | None = None  # the id of the fault that answered or changed it


class Journal:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._entries: deque[JournalEntry] = deque(maxlen=size)
        self._next_id = 1
        self._grown: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def record(
        self,
        *,
        at: datetime,
        kind: str,
        method: str,
        path: str,
        status: int | None,
        duration_ms: float,
        client_id: str | None,
        summary: dict[str, Any],
        fault: str | None,
    ) -> JournalEntry:
        entry = JournalEntry(
            id=self._next_id,
            at=as_utc(at),
            kind=kind,
            method=method,
            path=path,
            status=status,
            duration_ms=round(duration_ms, 2),
            client_id=client_id,
            summary=summary,
            fault=fault,
        )
        self._next_id += 1
        self._entries.append(entry)
        if self._grown is not None:
            self._grown.set()
            self._grown = None
        return entry

    def clear(self) -> None:
        """Forget every entry; numbering goes on, so a follower's `since` stays meaningful."""
        self._entries.clear()

    def query(
        self,
        *,
        client_id: str | None = None,
        kinds: Collection[str] = (),
        since_id: int | None = None,
        since_at: datetime | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        """Matching entries, oldest first. With `since_id`, the first `limit` after it (paging forward);
        without, the newest `limit`."""
        found = [entry for entry in self._entries if _matches(entry, client_id, kinds, since_id, since_at)]
        if limit is None or len(found) <= limit:
            return found
        return found[:limit] if since_id is not None else found[-limit:]

    async def wait(self, after_id: int, timeout: float) -> None:  # noqa: ASYNC109 - a long poll's own budget
        """Return once an entry newer than `after_id` was recorded, or after `timeout` seconds."""
        if self.last_id > after_id or timeout <= 0:
            return
        if self._grown is None:
            self._grown = asyncio.Event()
        grown = self._grown
        try:
            await asyncio.wait_for(grown.wait(), min(timeout, MAX_WAIT))
        except TimeoutError:
            return


def _matches(
    entry: JournalEntry,
    client_id: str | None,
    kinds: Collection[str],
    since_id: int | None,
    since_at: datetime | None,
) -> bool:
    if client_id is not None and entry.client_id != client_id:
        return False
    if kinds and entry.kind not in kinds:
        return False
    if since_id is not None and entry.id <= since_id:
        return False
    return since_at is None or entry.at >= as_utc(since_at)


def split_kinds(values: Iterable[str]) -> list[str]:
    """`kind=token,mcp` or `kind=token&kind=mcp`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
