"""Following the server's delegations, and deciding them without a person: written once, for every front end (the
CLI's `watch`, the TUI's live Inbox, the side-car, and the test kit's `TrustedDevice`).

`DelegationFollower` holds `GET /device/delegations/stream` open and hands each delegation to its caller. The server
replays every pending delegation when a stream opens, then sends one whenever a delegation is created or changes, so
nothing is polled. When the server goes away the follower reconnects with `Backoff` and reports the state of the link
(connecting, online, offline with the reason and the delay); a refusal (a 4xx: a bad signature, a removed device)
does not heal by waiting and is raised.

`AutoDecider` decides each new pending delegation once, by a `Policy` (approve all, deny all, or a rules file), and
says what it did as an `Outcome`; `decide_as_they_come()` puts the two together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Final, Literal

from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.decisions import Decision
from vouchsim.companion.core.errors import (
    ApiError,
    DelegationClosedError,
    DelegationNotFoundError,
    TransportError,
    UnexpectedResponseError,
)
from vouchsim.companion.core.rules import Action, RuleSet, evaluate
from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.text import decision_line

Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    """Reconnection delays: 0.5 s doubling up to 10 s, back to the start once a stream opens."""

    def __init__(self, first: float = 0.5, factor: float = 2.0, cap: float = 10.0) -> None:
        self._first, self._factor, self._cap = first, factor, cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * self._factor, self._cap)
        return delay


LinkState = Literal["connecting", "online", "offline"]


@dataclass(frozen=True)
class LinkEvent:
    """The follower's connection changed: `problem` (a sentence) and `retry_in` (seconds) when offline;
    `reconnected` when online again after having been online before."""

    state: LinkState
    problem: str = ""
    retry_in: float | None = None
    reconnected: bool = False


# Called with each delegation the server sends; True stops the follower.
DelegationHandler = Callable[[Delegation], Awaitable[bool]]


class DelegationFollower:
    def __init__(
        self,
        client: DeviceApiClient,
        *,
        on_link: Callable[[LinkEvent], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.backoff = backoff or Backoff()
        self._on_link = on_link
        self._sleep = sleep
        self.connections = 0  # streams the server accepted so far

    async def run(self, handle: DelegationHandler) -> None:
        """Hand every delegation to `handle` until it returns True (or the task is cancelled). A transport failure
        while `handle` works (deciding, say) is a lost connection too: the replay on reconnection brings the
        delegation back."""
        while True:
            self._report(LinkEvent("connecting"))
            try:
                async with aclosing(self.client.stream_delegations(on_open=self._opened)) as stream:
                    async for delegation in stream:
                        if await handle(delegation):
                            return
                problem = "The server closed the delegation stream."
            except (TransportError, UnexpectedResponseError) as exc:
                problem = str(exc)
            except ApiError as exc:
                if exc.status < 500:
                    raise  # a refusal (bad signature, unknown device, no such endpoint) does not heal by waiting
                problem = f"The server answered {exc.status} {exc.error_code}."
            delay = self.backoff.next()
            self._report(LinkEvent("offline", problem, delay))
            await self._sleep(delay)

    def _opened(self) -> None:
        self.connections += 1
        self.backoff.reset()
        self._report(LinkEvent("online", reconnected=self.connections > 1))

    def _report(self, event: LinkEvent) -> None:
        if self._on_link is not None:
            self._on_link(event)


# --- deciding without a person ----------------------------------------------------------------------------------

Policy = Callable[[Delegation], tuple[Action, str]]  # what to do, and why (shown on the outcome's line)
AutoMode = Literal["approve-all", "deny-all"]
PAST: Final[dict[Decision, str]] = {"approve": "approved", "deny": "denied"}


def policy_for(mode: AutoMode | RuleSet) -> Policy:
    """Approve everything, deny everything, or decide by rules (docs/companion-rules.md)."""
    if mode == "approve-all":
        return lambda _: ("approve", "approve-all")
    if mode == "deny-all":
        return lambda _: ("deny", "deny-all")
    if not isinstance(mode, RuleSet):
        raise ValueError(f"an auto mode is 'approve-all', 'deny-all' or a RuleSet, not {mode!r}")
    rules = mode

    def by_rules(delegation: Delegation) -> tuple[Action, str]:
        verdict = evaluate(rules, delegation)
        return verdict.action, verdict.reason

    return by_rules


Verb = Literal["approved", "denied", "left", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What the decider did with one delegation, and why."""

    verb: Verb
    delegation: Delegation
    reason: str

    @property
    def decided(self) -> bool:
        return self.verb in ("approved", "denied")

    @property
    def line(self) -> str:
        return decision_line(self.verb, self.delegation, self.reason)


# Asked when the policy says "ask": the person's decision, or None when nobody can be asked.
Ask = Callable[[Delegation], Awaitable[Decision | None]]


class AutoDecider:
    """Decides each new pending delegation once. The server replays every pending delegation on each connection; a
    delegation is handled once, unless deciding it failed for want of a server (then the replay brings it back)."""

    def __init__(
        self,
        client: DeviceApiClient,
        policy: Policy,
        *,
        ask: Ask | None = None,
        unasked: str = "nobody to ask",
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self._ask = ask
        self._unasked = unasked  # why an "ask" was left pending, when `ask` is None
        self._on_outcome = on_outcome
        self.handled: set[str] = set()
        self.decided = 0

    async def consider(self, delegation: Delegation) -> Outcome | None:
        """Decide `delegation` if it is new and pending; what was done, or None when there was nothing to do."""
        if not delegation.is_pending or delegation.delegation_id in self.handled:
            return None
        action, reason = self.policy(delegation)
        if action == "ask":
            answer = await self._ask(delegation) if self._ask is not None else None
            action, reason = (answer, "asked") if answer is not None else ("leave", f"{reason}; {self._unasked}")
        if action == "leave":
            return self._done(Outcome("left", delegation, f"{reason}; still pending"))
        try:
            await self.client.decide(delegation, action)
        except DelegationClosedError as exc:
            now = exc.delegation_status or str(exc).rstrip(".")
            return self._done(Outcome("skipped", delegation, f"no longer pending: {now}"))
        except DelegationNotFoundError:
            return self._done(Outcome("skipped", delegation, "the server no longer knows it"))
        # A TransportError goes up to the follower: it reconnects, the replay brings the delegation back, and a
        # decision that did land before the connection broke is then answered `delegation_closed`.
        self.decided += 1
        return self._done(Outcome("approved" if action == "approve" else "denied", delegation, reason))

    def _done(self, outcome: Outcome) -> Outcome:
        self.handled.add(outcome.delegation.delegation_id)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome


async def decide_as_they_come(
    decider: AutoDecider,
    *,
    once: bool = False,
    on_link: Callable[[LinkEvent], None] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Follow the stream and decide each delegation as it arrives, until cancelled (with `once`: until the first
    decision)."""

    async def handle(delegation: Delegation) -> bool:
        outcome = await decider.consider(delegation)
        return once and outcome is not None and outcome.decided

    await DelegationFollower(decider.client, on_link=on_link, sleep=sleep).run(handle)
