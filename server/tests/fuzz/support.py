"""What both fuzz runs share: how many cases, Hypothesis's settings, and the inputs left to the edge guard.

`VOUCHSIM_FUZZ_CASES` sets the number of cases of each run (2,000 by default, what `make test` runs); raise it for a
longer hunt. Runs are derandomized (the same cases every time, so CI is reproducible) unless `VOUCHSIM_FUZZ_SEED` is
set, which picks another fixed set of cases.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, settings

CASES = int(os.environ.get("VOUCHSIM_FUZZ_CASES", "2000"))
SEED = os.environ.get("VOUCHSIM_FUZZ_SEED")

# Three classes of bad input are refused at the boundary by server/edge (issue 9, finding 3): JSON nested deeper
# than the parser's recursion limit, NUL bytes (PostgreSQL refuses them in text: a 500 without the guard), and a
# body on /mcp that is not UTF-8. The runs send all three; setting this to False leaves them out, to hunt other
# classes of failure with the guard's answers out of the way.
EDGE_GUARD_MERGED = True
# How deep the nested bodies go: past any parser's recursion limit only once the edge guard refuses them.
MAX_DEPTH = 60_000 if EDGE_GUARD_MERGED else 400


def nested(depth: int, *, object_: bool) -> bytes:
    opener, closer = ('{"a":', "}") if object_ else ("[", "]")
    return (opener * depth + "1" + closer * depth).encode()


def fuzz_settings() -> settings:
    return settings(
        max_examples=CASES,
        deadline=None,
        derandomize=SEED is None,
        database=None,  # no example database: a run is what the seed says, nothing remembered from earlier runs
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, at once
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        print_blob=True,
    )


class SameDraws:
    """`data.draw` for a case's first backend, and the same values, in the same order, for each other backend
    (after `replay()`): the choices made for a case are the case's, not a backend's, and Hypothesis sees them once."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self._drawn: list[Any] = []
        self._replaying: Iterator[Any] | None = None

    def draw(self, strategy: Any, label: Any = None) -> Any:
        if self._replaying is not None:
            return next(self._replaying)
        value = self._data.draw(strategy, label=label)
        self._drawn.append(value)
        return value

    def replay(self) -> None:
        self._replaying = iter(self._drawn)


def seeded(test: Any) -> Any:
    """Apply `VOUCHSIM_FUZZ_SEED`, when set, to a Hypothesis test."""
    if SEED is None:
        return test
    from hypothesis import seed

    return seed(int(SEED))(test)


def summary(name: str, counts: Counter[Any]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{key}: {value}" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])))
    return f"{name}: {total} cases ({parts})"
