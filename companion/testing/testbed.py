"""The testbed controls for tests, synchronous: `companion.core.testbed.TestbedClient` run on an event loop of its
own, in a background thread (as `TrustedDevice` does), so plain and async tests can both call it.

    testbed = Testbed("http://127.0.0.1:8741", token)
    with testbed.fault({"status": 400, "error": "invalid_grant"}, kind="token", grant_type="refresh_token"):
        ...                                   # the next refresh fails; the fault is removed on leaving
    testbed.advance(3601)                     # every access token issued so far has expired
    for entry in testbed.journal(client_id=client_id):
        print(journal_line(entry))
    testbed.reset()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

from vouchsim.companion.core.testbed import (
    ClockState,
    Fault,
    FaultNotFoundError,
    JournalEntry,
    TestbedClient,
    journal_line,
)

T = TypeVar("T")
CALL_TIMEOUT: Final = 60.0

__all__ = ["ClockState", "Fault", "JournalEntry", "Testbed", "journal_line"]


class Testbed:
    """A server's testbed controls (`vouchsim serve --testbed`), reached with its bearer token."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, server_url: str, token: str) -> None:
        self.server_url = server_url.rstrip("/")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vouchsim-testbed", daemon=True)
        self._thread.start()
        self._connection: AbstractAsyncContextManager[TestbedClient] = TestbedClient.connect(self.server_url, token)
        try:
            self._client = self._call(self._connection.__aenter__())
        except BaseException:
            self._stop_loop()
            raise

    # --- journal ---------------------------------------------------------------------------------------------

    def journal(
        self,
        *,
        client_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        since: int | datetime | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        """Journal entries, oldest first: of one client, of some kinds (`"token"`, `["token", "mcp"]`), after an
        entry id or from a time, at most `limit`."""
        return self._call(self._client.journal(client_id=client_id, kind=kind, since=since, limit=limit))

    def last_entry_id(self) -> int:
        """The id of the newest entry so far (0: none): `journal(since=...)` with it shows what came after."""
        newest = self.journal(limit=1)
        return newest[-1].id if newest else 0

    def clear_journal(self) -> None:
        self._call(self._client.clear_journal())

    # --- faults ----------------------------------------------------------------------------------------------

    def add_fault(
        self,
        action: Mapping[str, Any],
        match: Mapping[str, Any] | None = None,
        *,
        times: int | None = 1,
        **match_keys: str,
    ) -> Fault:
        """Arm a fault until it has fired `times` times (None: until removed). `match` (or its keys as keyword
        arguments): kind, client_id, grant_type, mcp_method, tool. `action`: `{"status": 400, "error": ...}`,
        `{"status": 503, "retry_after": 5}`, `{"delay_ms": 2000}`, `{"drop": True}`, `{"expire_token": True}`."""
        return self._call(self._client.add_fault(action=action, match={**(match or {}), **match_keys}, times=times))

    @contextmanager
    def fault(
        self,
        action: Mapping[str, Any],
        match: Mapping[str, Any] | None = None,
        *,
        times: int | None = 1,
        **match_keys: str,
    ) -> Iterator[Fault]:
        """`add_fault` for the length of a `with` block: removed on leaving, fired or not."""
        armed = self.add_fault(action, match, times=times, **match_keys)
        try:
            yield armed
        finally:
            with suppress(FaultNotFoundError):  # fired its last, or removed by a reset meanwhile
                self.remove_fault(armed.id)

    def faults(self) -> list[Fault]:
        return self._call(self._client.faults())

    def remove_fault(self, fault_id: str) -> None:
        self._call(self._client.remove_fault(fault_id))

    def remove_faults(self) -> None:
        self._call(self._client.remove_faults())

    # --- clock and reset -------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> ClockState:
        """Move the server's clock `seconds` forward: codes, tokens, pairings, sessions and delegations expire."""
        return self._call(self._client.advance(seconds))

    def clock(self) -> ClockState:
        return self._call(self._client.clock())

    def reset_clock(self) -> ClockState:
        return self._call(self._client.reset_clock())

    def reset(self) -> None:
        """Wipe clients, users, devices, connections, tokens, sessions, delegations, faults and the journal; the
        clock back to real time; the signing keys stay. Returns once done."""
        self._call(self._client.reset())

    # --- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client and the loop. Idempotent."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._connection.__aexit__(None, None, None))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)
