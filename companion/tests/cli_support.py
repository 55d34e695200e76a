"""Running the headless CLI in-process in tests: injected streams, transport, clock and sleep."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import httpx

from vouchsim.companion.cli import main


class TtyInput(io.StringIO):
    """A stdin that claims to be a terminal and types `answer`."""

    def isatty(self) -> bool:
        return True


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.rstrip("\n").splitlines()[-1]

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def notes(self) -> list[str]:
        return self.err.splitlines()


RunCli = Callable[..., Result]


class Sleeps:
    """An injected sleep that records the delays asked for and returns at once; after `stop_after` calls
    it raises KeyboardInterrupt, as a person pressing Ctrl-C on a watcher would."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            raise KeyboardInterrupt
        await asyncio.sleep(0)


def run(
    argv: list[str],
    transport: httpx.AsyncBaseTransport | None,
    *,
    answer: str | None = None,
    stdin: TextIO | None = None,
    environ: dict[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Sleeps | None = None,
) -> Result:
    """Run the CLI; `answer` makes stdin a TTY that types it, None a non-interactive pipe."""
    if stdin is None:
        stdin = io.StringIO() if answer is None else TtyInput(answer)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        argv,
        http_transport=transport,
        environ=environ or {},
        stdin=stdin,
        stdout=out,
        stderr=err,
        clock=clock,
        sleep=sleep or Sleeps(stop_after=1),
    )
    return Result(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: Result, code: int, pattern: str) -> None:
    assert result.code == code
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    assert re.search(pattern, result.err), result.err
