"""A trusted device for tests: enrolled into a state directory, it approves or denies delegations by explicit
calls or automatically (`auto("approve-all" | "deny-all" | RuleSet | rules file)`), and completes
authorization pages. Its methods are synchronous, so plain and async tests can both call them: the device
runs its HTTP on an event loop of its own, in a background thread, until `close()`.

`auto()` is the companion core's follower and decision policy (`companion.core.follower`), as in `vouchsim
companion watch` and the side-car: it follows the server's delegation stream, so a request is decided as soon as
the server announces it, with no polling.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import httpx

from vouchsim.companion.core.authorization import AuthorizationPage
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.decisions import Decision
from vouchsim.companion.core.follower import AutoDecider, Outcome, decide_as_they_come, policy_for
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.rules import RuleSet, load_rules
from vouchsim.companion.core.schemas import Delegation

T = TypeVar("T")
AutoMode = Literal["approve-all", "deny-all"] | RuleSet | Path
DEVICE_NAME: Final = "vouchsim test device"
CALL_TIMEOUT: Final = 60.0


class TrustedDevice:
    """Use `TrustedDevice.enrol(state_dir, server_url)` (or `open(state_dir)` for an enrolled one)."""

    def __init__(self, state_dir: Path, server_url: str) -> None:
        self.state_dir = state_dir
        self.server_url = server_url.rstrip("/")
        self.decided: list[tuple[str, Decision]] = []  # what auto() did, in order
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vouchsim-device", daemon=True)
        self._thread.start()
        self._http = self._call(self._new_http())
        self.client = DeviceApiClient(self._http, Keystore(state_dir))
        self._page = AuthorizationPage(self.client)
        self._auto: Future[None] | None = None

    async def _new_http(self) -> httpx.AsyncClient:  # created on the device's own loop
        return httpx.AsyncClient(base_url=self.server_url, timeout=30.0, headers={"User-Agent": "vouchsim-testing"})

    @classmethod
    def enrol(cls, state_dir: Path, server_url: str, *, name: str = DEVICE_NAME) -> TrustedDevice:
        """Enrol a fresh key with the server (unless `state_dir` already holds an enrolment with it)."""
        existing = Keystore(state_dir).read_enrolment()
        device = cls(state_dir, server_url)
        if existing is None or server_url.rstrip("/") not in (existing.server_url, existing.issuer.rstrip("/")):
            try:
                device._call(device.client.enrol(name, new_key=existing is not None))
            except BaseException:
                device.close()
                raise
        return device

    @classmethod
    def open(cls, state_dir: Path) -> TrustedDevice:
        """An already enrolled device (NotEnrolledError if it is not)."""
        return cls(state_dir, Keystore(state_dir).load_identity().enrolment.server_url)

    @property
    def device_id(self) -> str:
        return self.client.identity().device_id

    # --- the authorization page --------------------------------------------------------------------------

    def authorize(self, authorize_url: str) -> str:
        """Complete the authorization page for `authorize_url` (pairing or consent) and return the redirect
        URL back to the client. The device's browser keeps its cookies between calls, as a person's would."""
        return self._call(self._page.complete(authorize_url))

    # --- delegations -------------------------------------------------------------------------------------

    def pending(self) -> list[Delegation]:
        return self._call(self.client.delegations("pending"))

    def approve(self, delegation_id: str) -> Delegation:
        return self._call(self._decide(delegation_id, "approve"))

    def deny(self, delegation_id: str) -> Delegation:
        return self._call(self._decide(delegation_id, "deny"))

    async def _decide(self, delegation_id: str, decision: Decision) -> Delegation:
        return await self.client.decide(await self.client.delegation(delegation_id), decision)

    def auto(self, mode: AutoMode) -> None:
        """Decide every pending delegation as it arrives, until `stop()`: approve all, deny all, or by rules
        (a RuleSet or a TOML rules file; a rule's `ask` or `leave` leaves the delegation pending)."""
        policy = policy_for(load_rules(mode) if isinstance(mode, Path) else mode)  # a bad mode fails here, at once
        self.stop()
        decider = AutoDecider(self.client, policy, on_outcome=self._record)
        self._auto = asyncio.run_coroutine_threadsafe(decide_as_they_come(decider), self._loop)

    def stop(self) -> None:
        """Stop deciding automatically (idempotent); re-raises what made the watcher fail, if anything."""
        auto, self._auto = self._auto, None
        if auto is None:
            return
        if not auto.done():
            self._loop.call_soon_threadsafe(auto.cancel)
        try:
            auto.result(CALL_TIMEOUT)
        except BaseException as exc:  # cancelled: stopped as asked
            if not auto.cancelled() and not isinstance(exc, asyncio.CancelledError):
                raise

    def _record(self, outcome: Outcome) -> None:
        if outcome.verb == "approved":
            self.decided.append((outcome.delegation.delegation_id, "approve"))
        elif outcome.verb == "denied":
            self.decided.append((outcome.delegation.delegation_id, "deny"))

    # --- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop `auto()`, close the HTTP clients and the device's loop. Idempotent."""
        if self._loop.is_closed():
            return
        try:
            self.stop()
        finally:
            self._call(self._aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()

    async def _aclose(self) -> None:
        await self._page.aclose()
        await self._http.aclose()

    def __enter__(self) -> TrustedDevice:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("TrustedDevice's synchronous methods cannot run on the device's own loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)
