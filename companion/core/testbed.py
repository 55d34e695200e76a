"""The HTTP client of a server's testbed controls (`/testbed/`, README "Testbed controls"), headless: what
`vouchsim testbed …`, the pytest plugin's testbed fixture and the TUI's Timeline build on.

    async with TestbedClient.connect("http://127.0.0.1:8741", token) as testbed:
        async with testbed.fault(match={"kind": "token", "grant_type": "refresh_token"},
                                 action={"status": 400, "error": "invalid_grant"}):
            ...                                   # the next refresh fails; the fault is removed on leaving
        await testbed.advance(3601)               # every access token issued so far has expired
        for entry in await testbed.journal(client_id=client_id):
            print(entry.kind, entry.method, entry.path, entry.status)
        async for entry in testbed.follow():      # live: each new entry as it is recorded
            ...
        await testbed.reset()                     # a clean server, signing keys kept

Like the device API client, it takes an injected `httpx.AsyncClient` (with the server's `base_url`), and every
failure is one of the typed errors below or of `companion.core.errors`; no httpx exception escapes.

The journal is per server instance: with `vouchsim serve --workers N`, each read answers from the worker it
reaches (`JournalPage.instance`). The clock, faults and reset apply to every worker.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from vouchsim.companion.core.errors import (
    CompanionError,
    ServerTimeoutError,
    ServerUnreachableError,
    TransportError,
    UnexpectedResponseError,
)

T = TypeVar("T")

TOKEN_VARIABLE = "VOUCHSIM_TESTBED_TOKEN"  # noqa: S105 - the name of the variable, not a token
INSTANCE_HEADER = "vouchsim-testbed-instance"
FOLLOW_WAIT = 25.0  # seconds one long poll of `follow` may be held by the server (it allows 30)
KINDS = ("discovery", "register", "authorize", "pairing", "token", "revoke", "introspect", "mcp", "device")


# --- errors --------------------------------------------------------------------------------------------------


class TestbedError(CompanionError):
    """The testbed controls refused a request, or the server has none."""

    __test__ = False  # not a pytest test class, whatever its name
    default_message = "The testbed controls refused the request."

    def __init__(self, message: str = "", *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_code = code


class TestbedUnauthorizedError(TestbedError):
    default_message = "The server refused the testbed token."
    hint: ClassVar[str] = (
        f"Pass --testbed-token or set {TOKEN_VARIABLE} (the server prints a generated one when it starts)."
    )


class TestbedDisabledError(TestbedError):
    default_message = "This server does not run the testbed controls."
    hint: ClassVar[str] = "Start it with `vouchsim serve --testbed` (or VOUCHSIM_TESTBED=1)."


class TestbedRequestError(TestbedError):
    """A request the controls rejected as malformed (400), with the server's description."""


class FaultNotFoundError(TestbedError):
    default_message = "The server has no such fault."
    hint: ClassVar[str] = "List them with `vouchsim testbed fault list`."


# --- wire types ----------------------------------------------------------------------------------------------


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One request to a journaled endpoint. `status` None: the connection was dropped (a fault)."""

    id: int
    at: datetime
    kind: str
    method: str
    path: str
    status: int | None
    duration_ms: float
    client_id: str | None
    summary: dict[str, Any]
    fault: str | None = None


class JournalPage(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[JournalEntry]
    instance: str = ""  # the server instance that answered (from its response header)


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    match: dict[str, Any]
    action: dict[str, Any]
    times: int | None
    remaining: int | None
    fired: int
    created_at: datetime


class _FaultList(msgspec.Struct, frozen=True, kw_only=True):
    faults: list[Fault]


class ClockState(msgspec.Struct, frozen=True, kw_only=True):
    now: datetime
    offset_seconds: float


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    error_description: str = ""


# --- how an entry reads (the CLI, the pytest plugin's failure report, the TUI's Timeline) ----------------


_SUMMARY_ORDER = ("method", "name", "id", "grant_type", "scope", "resource", "error")


def journal_line(entry: JournalEntry) -> str:
    """`   12 12:00:01.234 token      POST /oauth/token 200  4.1 ms  client=vsc_… grant_type=… [fault flt_…]`"""
    status = "dropped" if entry.status is None else str(entry.status)
    parts = [
        f"{entry.id:>5}",
        entry.at.strftime("%H:%M:%S.%f")[:-3],
        f"{entry.kind:<10}",
        f"{entry.method} {entry.path}",
        f"{status:>3}",
        f"{entry.duration_ms:.1f} ms",
    ]
    if entry.client_id:
        parts.append(f"client={entry.client_id}")
    shown = [key for key in _SUMMARY_ORDER if key in entry.summary]
    for key in shown:
        value = entry.summary[key]
        parts.append(f"{'rpc_' + key if key in ('method', 'id') else key}={_short(value)}")
    if entry.fault:
        parts.append(f"[fault {entry.fault}]")
    return "  ".join(parts)


def step_label(entry: JournalEntry) -> str:
    """What the step was, in a few words, for the Timeline (beside its kind): `refresh_token grant`,
    `tools/call delegation_request`, `GET /.well-known/oauth-authorization-server`."""
    summary = entry.summary
    if entry.kind == "token" and summary.get("grant_type"):
        return f"{_short(summary['grant_type'])} grant"
    if entry.kind == "mcp" and summary.get("method"):
        tool = f" {_short(summary['name'])}" if summary.get("name") else ""
        return f"{_short(summary['method'])}{tool}"
    return f"{entry.method} {entry.path}"


def is_step(entry: JournalEntry) -> bool:
    """Whether the entry is a step of the flow, for the Timeline: everything but a device's reads (its list polls
    and its delegation stream), which repeat while nothing happens."""
    return not (entry.kind == "device" and entry.method == "GET")


def outcome_label(entry: JournalEntry) -> str:
    """How the step ended: `200`, `400 invalid_grant`, `dropped`."""
    if entry.status is None:
        return "dropped"
    error = entry.summary.get("error")
    return f"{entry.status} {_short(error)}" if error else str(entry.status)


def is_error(entry: JournalEntry) -> bool:
    """A dropped connection, an HTTP error status, or an error code in the answer (a JSON-RPC error on 200)."""
    return entry.status is None or entry.status >= 400 or bool(entry.summary.get("error"))


def _short(value: object) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 60 else text[:59] + "…"


# --- the client ----------------------------------------------------------------------------------------------


class TestbedClient:
    __test__ = False

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        if not str(http.base_url):
            raise ValueError("the httpx client needs a base_url: the server's URL")
        if not token:
            raise TestbedUnauthorizedError("No testbed token was given.")
        self._http = http
        self._token = token

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        server_url: str,
        token: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - the HTTP client's own timeout
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AsyncIterator[TestbedClient]:
        """A client with an HTTP connection pool of its own, closed on leaving."""
        async with httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "vouchsim-testbed"},
        ) as http:
            yield cls(http, token)

    @property
    def server_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    # --- journal -------------------------------------------------------------------------------------------

    async def journal(
        self,
        *,
        client_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        since: int | datetime | None = None,
        limit: int | None = None,
        wait: float | None = None,
    ) -> list[JournalEntry]:
        """Journal entries, oldest first: of one client, of some kinds, after an entry id (or from a time), at
        most `limit` (after `since`: the first ones; otherwise the newest). With `wait` (seconds, at most 30)
        and nothing to show yet, the server holds the request until something is recorded."""
        page = await self.journal_page(client_id=client_id, kind=kind, since=since, limit=limit, wait=wait)
        return page.entries

    async def journal_page(
        self,
        *,
        client_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        since: int | datetime | None = None,
        limit: int | None = None,
        wait: float | None = None,
    ) -> JournalPage:
        """`journal`, with the instance that answered."""
        params: dict[str, str] = {}
        if client_id is not None:
            params["client_id"] = client_id
        if kind:
            params["kind"] = kind if isinstance(kind, str) else ",".join(kind)
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else str(since)
        if limit is not None:
            params["limit"] = str(limit)
        timeout: httpx.Timeout | None = None
        if wait:
            params["wait"] = f"{wait:g}"
            configured = self._http.timeout
            read = None if configured.read is None else configured.read + wait
            timeout = httpx.Timeout(connect=configured.connect, read=read, write=configured.write, pool=configured.pool)
        response = await self._request("GET", "/testbed/journal", params=params, timeout=timeout)
        page = _decode(response, JournalPage)
        return msgspec.structs.replace(page, instance=response.headers.get(INSTANCE_HEADER, ""))

    async def clear_journal(self) -> None:
        await self._request("DELETE", "/testbed/journal")

    async def follow(
        self,
        *,
        client_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        since: int | None = None,
        wait: float = FOLLOW_WAIT,
    ) -> AsyncGenerator[JournalEntry, None]:
        """Every matching entry after `since` (None: every one the journal holds now), then each new one as it
        is recorded, forever (long polls; close it with `contextlib.aclosing` or by cancelling). A journal
        cleared meanwhile goes on from where it was (entry ids keep counting)."""
        after = since
        while True:
            entries = await self.journal(client_id=client_id, kind=kind, since=after, wait=wait)
            for entry in entries:
                yield entry
            if entries:
                after = entries[-1].id
            elif after is None:
                after = 0

    # --- faults --------------------------------------------------------------------------------------------

    async def add_fault(
        self, *, action: Mapping[str, Any], match: Mapping[str, Any] | None = None, times: int | None = 1
    ) -> Fault:
        """Arm a fault: `match` (kind, client_id, grant_type, mcp_method, tool), `action` (status + error +
        error_description + retry_after, or drop, or expire_token, with or without delay_ms), `times` (None:
        until removed). In force on every server instance once this returns."""
        body = {"match": dict(match or {}), "action": dict(action), "times": times}
        return _decode(await self._request("POST", "/testbed/faults", json=body), Fault)

    @asynccontextmanager
    async def fault(
        self, *, action: Mapping[str, Any], match: Mapping[str, Any] | None = None, times: int | None = 1
    ) -> AsyncIterator[Fault]:
        """`add_fault` for the length of a `with` block: removed on leaving (if still there)."""
        armed = await self.add_fault(action=action, match=match, times=times)
        try:
            yield armed
        finally:
            with suppress(FaultNotFoundError):  # removed meanwhile (a reset, say)
                await self.remove_fault(armed.id)

    async def faults(self) -> list[Fault]:
        """Every fault, oldest first, with `remaining` firings (None: until removed) and how often it `fired`."""
        return _decode(await self._request("GET", "/testbed/faults"), _FaultList).faults

    async def remove_fault(self, fault_id: str) -> None:
        try:
            await self._request("DELETE", f"/testbed/faults/{_segment(fault_id)}")
        except TestbedDisabledError:
            await self.clock()  # raises TestbedDisabledError again if the controls are off altogether
            raise FaultNotFoundError(f"The server has no fault {fault_id}.", status=404, code="not_found") from None

    async def remove_faults(self) -> None:
        await self._request("DELETE", "/testbed/faults")

    # --- clock ---------------------------------------------------------------------------------------------

    async def clock(self) -> ClockState:
        return _decode(await self._request("GET", "/testbed/clock"), ClockState)

    async def advance(self, seconds: float) -> ClockState:
        """Move the server's clock `seconds` forward: everything that expires follows, on every instance."""
        return _decode(await self._request("POST", "/testbed/clock", json={"advance_seconds": seconds}), ClockState)

    async def reset_clock(self) -> ClockState:
        """Back to real time."""
        return _decode(await self._request("DELETE", "/testbed/clock"), ClockState)

    # --- reset ---------------------------------------------------------------------------------------------

    async def reset(self) -> None:
        """Wipe clients, users, devices, connections, tokens, sessions, delegations, faults and the journal, and
        return the clock to real time; the server's signing keys stay. Returns once done on every instance."""
        await self._request("POST", "/testbed/reset")

    # --- plumbing ------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 - httpx's per-request timeout
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise ServerTimeoutError(f"The server at {self.server_url} did not answer in time.") from exc
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(f"Could not connect to the server at {self.server_url}.") from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"The connection to {self.server_url} failed ({exc.__class__.__name__}: {exc})."
            ) from exc
        if response.is_success:
            return response
        raise _error_for(response)


def _decode(response: httpx.Response, expect: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=expect)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponseError(
            f"The server's answer to {response.request.method} {response.request.url.path} is not what the "
            f"testbed controls promise: {exc}."
        ) from exc


def _error_for(response: httpx.Response) -> CompanionError:
    try:
        body: _ErrorBody | None = msgspec.json.decode(response.content, type=_ErrorBody)
    except msgspec.DecodeError:
        body = None
    status = response.status_code
    description = body.error_description if body is not None else ""
    code = body.error if body is not None else ""
    if status == 401:
        return TestbedUnauthorizedError(status=status, code=code)
    if status == 404:
        return TestbedDisabledError(status=status, code=code)
    if body is not None and 400 <= status < 500:
        return TestbedRequestError(description or code, status=status, code=code)
    return UnexpectedResponseError(
        f"The server answered HTTP {status} to {response.request.method} {response.request.url.path}."
    )


def _segment(value: str) -> str:
    """An id as one path segment: a slash or dot-dot in it must not reach another endpoint."""
    return quote(value, safe="")
