"""A countdown to an instant, on the injected clock (so tests and screenshots can freeze time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from textual.message import Message
from textual.widgets import Static

from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import countdown

URGENT_SECONDS = 60


class Countdown(Static):
    """`prefix 4:05`, ticking once a second; `-urgent` in the last minute, `-over` once it is over.

    Posts `Countdown.Elapsed` once when the deadline passes. `tick()` recomputes now (the timer calls it;
    tests call it after moving their clock).
    """

    @dataclass
    class Elapsed(Message):
        countdown: Countdown

        @property
        def control(self) -> Countdown:
            return self.countdown

    def __init__(
        self,
        deadline: datetime,
        *,
        clock: Clock,
        prefix: str = "",
        over: str = "expired",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(markup=False, id=id, classes=classes)
        self.deadline = deadline
        self._clock = clock
        self._prefix = prefix
        self._over = over
        self._elapsed = False

    @property
    def seconds_left(self) -> float:
        return (self.deadline - datetime.fromtimestamp(self._clock(), UTC)).total_seconds()

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        left = self.seconds_left
        over = left <= 0
        self.set_class(0 < left <= URGENT_SECONDS, "-urgent")
        self.set_class(over, "-over")
        self.update(self._over if over else f"{self._prefix}{countdown(left)}")
        if over and not self._elapsed:
            self._elapsed = True
            self.post_message(self.Elapsed(self))
