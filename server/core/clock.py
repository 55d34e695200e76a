"""Time as an injected dependency, so tests freeze and advance it instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests: stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class OffsetClock:
    """Another clock, moved forward by an offset: the testbed's clock (server/testbed/), which every expiry reads
    because it is the Runtime's clock. `real_now` is the clock underneath, for what protects transport rather
    than expires (the freshness window of signed device requests)."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self._offset = timedelta(0)

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()

    def set_offset(self, seconds: float) -> None:
        self._offset = timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self.base.now() + self._offset

    def real_now(self) -> datetime:
        return real_now(self.base)


def real_now(clock: Clock) -> datetime:
    """The time without any testbed offset: what a peer's own clock reads (for a clock without an offset, its
    `now`)."""
    return clock.real_now() if isinstance(clock, OffsetClock) else clock.now()


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def isoformat(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")
