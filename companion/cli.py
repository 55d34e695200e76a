"""Headless companion commands: `python -m vouchsim.companion enrol | scan | connections | unpair | whoami`, for
delegations, `pending | approve | deny | history | revoke | watch`, and `authorize-url` for other
projects' CI (the person at the authorization page, headless).

Each command prints results on stdout and, on failure, one line on stderr: exit 2 for a usage error,
1 for a failure, never a traceback. `watch` also reports its connection on stderr, keeping stdout for one
line per decision. Everything the commands do lives in `companion.core`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

import httpx
import msgspec

from vouchsim.companion.core.client import MAX_NAME_LENGTH, DeviceApiClient
from vouchsim.companion.core.config import DEFAULT_SERVER_URL, CompanionConfig, ConfigError, load_config
from vouchsim.companion.core.decisions import Decision, SignedDecision
from vouchsim.companion.core.errors import (
    AlreadyEnrolledError,
    ApiError,
    CompanionError,
    DelegationClosedError,
    DelegationNotFoundError,
    TransportError,
    UnexpectedResponseError,
)
from vouchsim.companion.core.keystore import DeviceIdentity, Enrolment, Keystore
from vouchsim.companion.core.qr import PAIRING_SCHEME, decode_qr, parse_pairing_uri
from vouchsim.companion.core.rules import Action, evaluate, load_rules
from vouchsim.companion.core.schemas import (
    Connection,
    ConnectionList,
    Delegation,
    DelegationList,
    PairingApproval,
    PairingContext,
)
from vouchsim.companion.core.signing import Clock

PROG = "vouchsim companion"
USER_AGENT = "vouchsim-companion"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Sleep = Callable[[float], Awaitable[None]]


class UsageError(Exception):
    """A command line argparse rejects; reported with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Raise instead of exiting so main() can print to the injected stderr and return a status.
        raise UsageError(f"{self.prog}: {message} (see --help)")


@dataclass(frozen=True)
class Cli:
    """What a command needs: parsed config, the keystore, streams, and what tests inject (the HTTP
    transport, the clock, and the sleep between reconnections)."""

    config: CompanionConfig
    keystore: Keystore
    transport: httpx.AsyncBaseTransport | None
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Clock = time.time
    sleep: Sleep = asyncio.sleep

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """Progress for the person watching (stderr): not part of a command's result."""
        print(f"{PROG}: {_one_line(text)}", file=self.stderr, flush=True)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def http(self, server_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=server_url,
            transport=self.transport,
            timeout=self.config.timeout,
            headers={"User-Agent": USER_AGENT},
        )


Command = Callable[[Cli, argparse.Namespace], Coroutine[Any, Any, int]]


def main(
    argv: Sequence[str] | None = None,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """Run one command and return its exit status."""
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        config = load_config(
            os.environ if environ is None else environ,
            state_dir=args.state,
            server_url=getattr(args, "server", None),
        )
    except UsageError as exc:
        print(_one_line(str(exc)), file=err)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{PROG}: {_one_line(str(exc))}", file=err)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command_fn is None:  # bare `vouchsim companion`: the TUI; Textual is imported only then
        from vouchsim.companion.app import run

        return run(config)
    if args.command_fn is _demo:  # the demo runs its own server and state: no config, no keystore
        from vouchsim.companion.demo.app import run_demo

        return run_demo(auto=args.auto, headless=args.headless, keep=args.keep, protocol=args.protocol)
    cli = Cli(
        config,
        Keystore(config.state_dir),
        http_transport,
        stdin or sys.stdin,
        stdout or sys.stdout,
        err,
        clock,
        sleep,
    )
    return _run(args.command_fn, cli, args, err)


def _run(command: Command, cli: Cli, args: argparse.Namespace, err: TextIO) -> int:
    try:
        return asyncio.run(command(cli, args))
    except CompanionError as exc:
        print(f"{PROG}: {_one_line(' '.join(filter(None, (str(exc), exc.hint))))}", file=err)
    except KeyboardInterrupt:
        if not args.quiet_interrupt:  # Ctrl-C is how a watcher is meant to stop: nothing to report
            print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback, but say it is one
        print(f"{PROG}: internal error ({exc.__class__.__name__}: {_one_line(str(exc))})", file=err)
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The headless Vouchsim companion (your trusted device).")
    # No command: the TUI (see main()).
    commands = parser.add_subparsers(title="commands", required=False, metavar="COMMAND")
    parser.set_defaults(command_fn=None, state=None, quiet_interrupt=False)

    enrol = _command(commands, "enrol", _enrol, "enrol this device with a server")
    enrol.add_argument("--name", help=f"device name shown to the user (1-{MAX_NAME_LENGTH} characters)")
    enrol.add_argument("--force", action="store_true", help="enrol a new key, forgetting the current one")

    scan = _command(commands, "scan", _scan, "claim a pairing from its QR, then approve or decline it")
    scan.add_argument("source", metavar="IMAGE_PATH_OR_URL", help="QR image file, http(s) URL, or the URI")
    scan.add_argument("--approve", action="store_true", help="approve without asking")

    listing = _command(commands, "connections", _connections, "list the runtime connections")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    unpair = _command(commands, "unpair", _unpair, "revoke a runtime connection and its tokens")
    unpair.add_argument("connection_id", metavar="CONNECTION_ID")

    whoami = _command(commands, "whoami", _whoami, "show this device's enrolment")
    whoami.add_argument("--json", action="store_true", help="machine-readable output")

    pending = _command(commands, "pending", _pending, "list the delegations waiting for a decision")
    pending.add_argument("--json", action="store_true", help="machine-readable output")

    approve = _command(commands, "approve", _approve, "approve a pending delegation (signs the decision)")
    approve.add_argument("delegation_id", metavar="DELEGATION_ID")

    deny = _command(commands, "deny", _deny, "deny a pending delegation (signs the decision)")
    deny.add_argument("delegation_id", metavar="DELEGATION_ID")

    history = _command(commands, "history", _history, "list decided, revoked and expired delegations")
    history.add_argument("--json", action="store_true", help="machine-readable output")

    revoke = _command(commands, "revoke", _revoke, "revoke an approved delegation (its token stops working)")
    revoke.add_argument("delegation_id", metavar="DELEGATION_ID")

    watch = _command(
        commands, "watch", _watch, "decide delegations as they arrive: all approved, all denied, or by rules"
    )
    watch.set_defaults(quiet_interrupt=True)
    mode = watch.add_mutually_exclusive_group(required=True)
    mode.add_argument("--approve-all", action="store_true", help="approve every pending delegation")
    mode.add_argument("--deny-all", action="store_true", help="deny every pending delegation")
    mode.add_argument("--rules", metavar="FILE", type=Path, help="decide by a TOML rules file")
    watch.add_argument("--once", action="store_true", help="exit after the first decision")
    watch.add_argument("--timeout", metavar="SECONDS", type=_seconds, help="stop (exit 0) after this many seconds")

    authorize = _command(
        commands,
        "authorize-url",
        _authorize_url,
        "complete an authorization page headlessly (QR, this device, code); print the redirect URL",
    )
    authorize.add_argument("url", metavar="URL", help="the authorization URL the OAuth client opened")

    demo = commands.add_parser(
        "demo",
        help="the whole story in one terminal: a server, a scripted MCP agent, and this companion",
        description="Start a server on a fresh SQLite database, enrol this companion (PIN 0000), and run a "
        "scripted MCP agent beside the TUI. Quitting stops everything.",
    )
    demo.set_defaults(command_fn=_demo, quiet_interrupt=False)
    demo.add_argument("--auto", action="store_true", help="answer the companion automatically, exit when done")
    demo.add_argument("--headless", action="store_true", help="run the TUI without a terminal (tests, CI)")
    demo.add_argument("--keep", action="store_true", help="keep the demo's state directory (database, logs)")
    demo.add_argument(
        "--protocol",
        choices=["auto", "legacy"],
        default="auto",
        help="the agent's MCP negotiation: auto (the SDK's default: 2026-07-28 via server/discover, falling back to "
        "the handshake) or legacy (force the 2025 initialize handshake)",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _command(
    commands: argparse._SubParsersAction[_Parser], name: str, fn: Command, help_text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command_fn=fn, quiet_interrupt=False)
    parser.add_argument("--state", metavar="DIR", help="state directory (default: ./var/companion)")
    if name == "enrol":
        parser.add_argument("--server", metavar="URL", help=f"server URL (default: {DEFAULT_SERVER_URL})")
    elif name != "whoami":  # whoami reads local state only
        parser.add_argument("--server", metavar="URL", help="server URL (default: the enrolled server)")
    return parser


# --- commands ------------------------------------------------------------------------------------------


async def _demo(cli: Cli, args: argparse.Namespace) -> int:
    """A marker: main() runs the demo itself (it needs no keystore and runs its own event loops)."""
    raise NotImplementedError


async def _authorize_url(cli: Cli, args: argparse.Namespace) -> int:
    """Enrol first if this state directory is not enrolled yet (with --server, or the URL's origin)."""
    from vouchsim.companion.testing.browser import AuthorizationPage, AuthorizationPageError

    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AuthorizationPageError(f"Expected an http(s) authorization URL, got {args.url!r}.")
    enrolment = cli.keystore.read_enrolment()
    server = args.server or (enrolment.server_url if enrolment else f"{parts.scheme}://{parts.netloc}")
    async with cli.http(server.rstrip("/")) as http:
        client = DeviceApiClient(http, cli.keystore)
        if enrolment is None:
            await client.enrol(default_device_name())
            cli.note(f"Enrolled with {client.server_url}.")
        async with AuthorizationPage(client) as page:
            location = await page.complete(args.url)
    cli.out(location)
    return EXIT_OK


async def _enrol(cli: Cli, args: argparse.Namespace) -> int:
    server = cli.config.server_for(None)
    existing = cli.keystore.read_enrolment()
    if existing is not None and not args.force:
        if server not in (existing.server_url, existing.issuer.rstrip("/")):
            raise AlreadyEnrolledError(f"This companion is already enrolled with {existing.server_url}, not {server}.")
        cli.out(f"Already enrolled with {existing.server_url}; pass --force to enrol a new key.")
        _print_identity(cli, existing)
        return EXIT_OK
    async with cli.http(server) as http:
        client = DeviceApiClient(http, cli.keystore)
        await client.enrol(args.name or default_device_name(), new_key=args.force)
        enrolment = client.identity().enrolment
    cli.out(f"Enrolled with {enrolment.server_url}.")
    _print_identity(cli, enrolment)
    return EXIT_OK


async def _scan(cli: Cli, args: argparse.Namespace) -> int:
    enrolment = cli.keystore.load_identity().enrolment  # fail before any decoding when not enrolled
    async with cli.http(cli.config.server_for(enrolment.server_url)) as http:
        payload = await _read_payload(args.source, http)
        parse_pairing_uri(payload, enrolment.issuer)  # the client checks again; this fails before I/O
        client = DeviceApiClient(http, cli.keystore)
        context = await client.claim(payload)
        _print_context(cli, context)
        if args.approve or (_interactive(cli) and _confirm(cli, "Approve this pairing? [y/N] ")):
            _print_approval(cli, await client.approve_pairing(context.pairing_id))
        elif _interactive(cli):
            declined = await client.decline_pairing(context.pairing_id)
            cli.out(f"Declined pairing {_clean(declined.pairing_id)}; the client is told access_denied.")
        else:
            cli.out("Nothing approved: the pairing stays claimed until it expires. To approve it, run:")
            cli.out(f"  {_approve_command(args)}")
    return EXIT_OK


def _listing(
    cli: Cli,
    args: argparse.Namespace,
    document: msgspec.Struct,
    rows: Sequence[object],
    *,
    empty: str,
    table: Callable[[], Iterable[str]],
) -> int:
    """A list command's output: the JSON `document` with --json, else `empty` or the lines of `table()` (built
    only when shown)."""
    if args.json:
        cli.out(msgspec.json.encode(document).decode())
    elif not rows:
        cli.out(empty)
    else:
        for line in table():
            cli.out(line)
    return EXIT_OK


async def _connections(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        connections = await client.connections()
    return _listing(
        cli, args, ConnectionList(connections=connections), connections,
        empty="No connections.", table=lambda: connection_table(connections),
    )  # fmt: skip


async def _unpair(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        connection = await client.revoke_connection(args.connection_id)
    cli.out(
        f"Unpaired {_clean(connection.connection_id)} ({_clean(connection.client_name)}), "
        f"revoked at {_when(connection.revoked_at)}."
    )
    return EXIT_OK


async def _whoami(cli: Cli, args: argparse.Namespace) -> int:
    enrolment = cli.keystore.load_identity().enrolment
    if args.json:
        cli.out(msgspec.json.encode(enrolment).decode())
    else:
        _print_identity(cli, enrolment)
    return EXIT_OK


# --- delegations ---------------------------------------------------------------------------------------


async def _pending(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        delegations = await client.delegations("pending")
    return _listing(
        cli, args, DelegationList(delegations=delegations), delegations,
        empty="No pending delegations.", table=lambda: pending_table(delegations, cli.now()),
    )  # fmt: skip


async def _history(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        delegations = await client.delegations("history")
    return _listing(
        cli, args, DelegationList(delegations=delegations), delegations,
        empty="No decided delegations yet.", table=lambda: history_table(delegations),
    )  # fmt: skip


async def _approve(cli: Cli, args: argparse.Namespace) -> int:
    return await _decide_one(cli, args.delegation_id, "approve")


async def _deny(cli: Cli, args: argparse.Namespace) -> int:
    return await _decide_one(cli, args.delegation_id, "deny")


async def _decide_one(cli: Cli, delegation_id: str, decision: Decision) -> int:
    """Sign over the server's own copy of the delegation, and show the person what is signed first."""
    async with _client(cli) as client:
        delegation = await client.delegation(delegation_id)
        _print_delegation(cli, delegation)
        if not delegation.is_pending:
            raise DelegationClosedError(
                f"Delegation {delegation.delegation_id} is no longer pending: it is {delegation.status}.",
                delegation_status=delegation.status,
            )
        signed = client.sign_decision(delegation, decision)
        _print_statement(cli, signed, client.identity())
        result = await client.send_decision(signed)
    cli.out(decision_line(_PAST[decision], result))
    return EXIT_OK


async def _revoke(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        delegation = await client.revoke_delegation(args.delegation_id)
    cli.out(decision_line(delegation.status, delegation))
    return EXIT_OK


async def _watch(cli: Cli, args: argparse.Namespace) -> int:
    policy = _policy(args)  # a broken rules file fails before any I/O
    timer = asyncio.timeout(args.timeout)
    async with _client(cli) as client:
        watcher = Watcher(cli, client, policy, once=args.once)
        try:
            async with timer:
                await watcher.run()
        except TimeoutError:
            if not timer.expired():
                raise
            cli.note(f"Stopped after {args.timeout:g} s ({_count(watcher.decided, 'decision')}).")
    return EXIT_OK


Policy = Callable[[Delegation], tuple[Action, str]]  # what to do, and why (shown on the line)
_PAST = {"approve": "approved", "deny": "denied"}


def _policy(args: argparse.Namespace) -> Policy:
    if args.approve_all:
        return lambda _: ("approve", "approve-all")
    if args.deny_all:
        return lambda _: ("deny", "deny-all")
    rules = load_rules(args.rules)

    def by_rules(delegation: Delegation) -> tuple[Action, str]:
        verdict = evaluate(rules, delegation)
        return verdict.action, verdict.reason

    return by_rules


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


class Watcher:
    """Follows the delegation stream, decides each new pending delegation by `policy`, and reconnects
    (with backoff) whenever the server goes away. The server replays every pending delegation on each
    connection; a delegation is handled once, unless deciding it failed for want of a server."""

    def __init__(self, cli: Cli, client: DeviceApiClient, policy: Policy, *, once: bool = False) -> None:
        self.cli = cli
        self.client = client
        self.policy = policy
        self.once = once
        self.decided = 0
        self.handled: set[str] = set()
        self.backoff = Backoff()
        self._connections = 0

    async def run(self) -> None:
        """Returns only with `once`, after the first decision; otherwise runs until cancelled."""
        while True:
            try:
                async with aclosing(self.client.stream_delegations(on_open=self._opened)) as stream:
                    async for delegation in stream:
                        if await self._consider(delegation) and self.once:
                            return
                problem = "The server closed the delegation stream"
            except (TransportError, UnexpectedResponseError) as exc:
                problem = str(exc).rstrip(".")
            except ApiError as exc:
                if exc.status < 500:
                    raise  # a refusal (bad signature, unknown device, no such endpoint) does not heal
                problem = f"The server answered {exc.status} {exc.error_code}"
            delay = self.backoff.next()
            self.cli.note(f"{problem}; reconnecting in {delay:g} s.")
            await self.cli.sleep(delay)

    def _opened(self) -> None:
        self._connections += 1
        self.backoff.reset()
        verb = "Watching" if self._connections == 1 else "Reconnected; watching"
        self.cli.note(f"{verb} delegations at {self.client.server_url}.")

    async def _consider(self, delegation: Delegation) -> bool:
        """Decide `delegation` if it is new and pending; True when a decision was made."""
        if not delegation.is_pending or delegation.delegation_id in self.handled:
            return False
        action, reason = self.policy(delegation)
        if action == "ask":
            if _interactive(self.cli):
                action, reason = await self._ask(delegation), "asked"
            else:
                action, reason = "leave", f"{reason}; no terminal to ask on"
        if action == "leave":
            self.handled.add(delegation.delegation_id)
            self.cli.out(decision_line("left", delegation, f"{reason}; still pending"))
            return False
        try:
            await self.client.decide(delegation, action)
        except DelegationClosedError as exc:
            self.handled.add(delegation.delegation_id)
            now = exc.delegation_status or str(exc).rstrip(".")
            self.cli.out(decision_line("skipped", delegation, f"no longer pending: {now}"))
            return False
        except DelegationNotFoundError:
            self.handled.add(delegation.delegation_id)
            self.cli.out(decision_line("skipped", delegation, "the server no longer knows it"))
            return False
        # A TransportError propagates to run(): it reconnects, the replay brings the delegation back, and
        # a decision that did land before the connection broke is then answered `delegation_closed`.
        self.handled.add(delegation.delegation_id)
        self.decided += 1
        self.cli.out(decision_line(_PAST[action], delegation, reason))
        return True

    async def _ask(self, delegation: Delegation) -> Decision:
        _print_delegation(self.cli, delegation)
        self.cli.stdout.write(f"Approve {_clean(delegation.delegation_id)}? [y/N] ")
        self.cli.stdout.flush()
        answer = await _read_line(self.cli.stdin)
        return "approve" if answer.strip().lower() in ("y", "yes") else "deny"


async def _read_line(stdin: TextIO) -> str:
    """A line from stdin without blocking the event loop, in a daemon thread: a watcher stopped by
    --timeout or Ctrl-C while a question is open must not wait for the person to press Enter."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        try:
            line = stdin.readline()
        except (OSError, ValueError):
            line = ""
        with suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="companion-stdin", daemon=True).start()
    return await answer


# --- helpers -------------------------------------------------------------------------------------------


@asynccontextmanager
async def _client(cli: Cli) -> AsyncIterator[DeviceApiClient]:
    """An API client for the enrolled device (NotEnrolledError before any I/O otherwise)."""
    enrolment = cli.keystore.load_identity().enrolment
    async with cli.http(cli.config.server_for(enrolment.server_url)) as http:
        yield DeviceApiClient(http, cli.keystore, clock=cli.clock)


async def _read_payload(source: str, http: httpx.AsyncClient) -> str:
    """The pairing URI itself (handy in scripts), or the text of the QR in an image file or URL."""
    if source.startswith(f"{PAIRING_SCHEME}:"):
        return source
    return await decode_qr(source, http=http)


def _approve_command(args: argparse.Namespace) -> str:
    """The same scan with --approve: claiming again from this device returns the same pairing."""
    words = ["scan", args.source, "--approve"]
    for flag, value in (("--state", args.state), ("--server", args.server)):
        if value:
            words += [flag, value]
    return f"{PROG} {shlex.join(words)}"


def _interactive(cli: Cli) -> bool:
    return cli.stdin.isatty()


def _confirm(cli: Cli, question: str) -> bool:
    cli.stdout.write(question)
    cli.stdout.flush()
    return cli.stdin.readline().strip().lower() in ("y", "yes")


def default_device_name() -> str:
    return f"Vouchsim companion on {socket.gethostname()}"[:MAX_NAME_LENGTH]


def _print_identity(cli: Cli, enrolment: Enrolment) -> None:
    rows = (
        ("device_id", enrolment.device_id),
        ("fingerprint", enrolment.fingerprint),
        ("name", enrolment.name),
        ("user_id", enrolment.user_id),
        ("issuer", enrolment.issuer),
        ("server", enrolment.server_url),
        ("enrolled_at", _when(enrolment.enrolled_at)),
    )
    for label, value in rows:
        cli.out(f"{label + ':':<13}{_clean(value)}")


def _print_context(cli: Cli, context: PairingContext) -> None:
    cli.out(f"Pairing request {_clean(context.pairing_id)}")
    cli.out(f"  client:   {_clean(context.client_name)} ({_clean(context.client_id)})")
    cli.out(f"  redirect: {_clean(context.redirect_host)}")
    cli.out(f"  scopes:   {_clean(', '.join(context.scopes)) or '(none)'}")
    cli.out(f"  expires:  {_when(context.expires_at)}")


def _print_approval(cli: Cli, approval: PairingApproval) -> None:
    cli.out(f"Approved. Type this code on the authorization page (valid until {_when(approval.code_expires_at)}):")
    cli.out(format_pairing_code(approval.pairing_code))  # last line: scripts read it with `tail -n 1`


def format_pairing_code(code: str) -> str:
    """`XXXX-XXXX`, whatever dash or spacing the server used; anything unexpected is shown as sent."""
    compact = "".join(code.split()).replace("-", "").upper()
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else _clean(code)


def connection_table(connections: Sequence[Connection]) -> list[str]:
    header = ("ID", "CLIENT", "SCOPES", "CREATED", "LAST USED", "STATUS")
    rows = [
        (
            _clean(c.connection_id),
            _clean(c.client_name),
            _clean(",".join(c.scopes)),
            _when(c.created_at),
            _when(c.last_used_at, "never"),
            "active" if c.revoked_at is None else f"revoked {_when(c.revoked_at)}",
        )
        for c in connections
    ]
    return _table(header, rows)


PURPOSE_WIDTH = 40


def pending_table(delegations: Sequence[Delegation], now: datetime) -> list[str]:
    header = ("ID", "CLIENT", "AUDIENCE", "SCOPES", "PURPOSE", "BINDING MESSAGE", "EXPIRES IN")
    rows = [
        (
            _clean(d.delegation_id),
            _clean(d.client_name),
            _clean(d.audience_id),
            _scopes(d),
            _shorten(_one_line(d.purpose), PURPOSE_WIDTH),
            _clean(d.binding_message),
            expires_in(d.expires, now),
        )
        for d in delegations
    ]
    return _table(header, rows)


def history_table(delegations: Sequence[Delegation]) -> list[str]:
    header = ("ID", "CLIENT", "AUDIENCE", "SCOPES", "STATUS", "DECIDED", "BY")
    rows = [
        (
            _clean(d.delegation_id),
            _clean(d.client_name),
            _clean(d.audience_id),
            _scopes(d),
            _clean(d.status),
            _when(d.decided_at),
            _clean(d.decided_by or "-"),
        )
        for d in delegations
    ]
    return _table(header, rows)


def decision_line(verb: str, delegation: Delegation, reason: str | None = None) -> str:
    """`approved dlg_… aud_test_payments payments.identity,payments.prepare (rule 2)`: one line per
    decision, the same in `watch`, `approve`, `deny` and `revoke`, so scripts can read it."""
    line = f"{_clean(verb)} {_clean(delegation.delegation_id)} {_clean(delegation.audience_id)} {_scopes(delegation)}"
    return f"{line} ({_one_line(reason)})" if reason else line


def expires_in(moment: datetime, now: datetime) -> str:
    """`4m 05s`, `45s`, `1h 02m`, or `expired`."""
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _print_delegation(cli: Cli, delegation: Delegation) -> None:
    d = delegation
    cli.out(f"Delegation {_clean(d.delegation_id)} ({_clean(d.status)})")
    cli.out(f"  client:   {_clean(d.client_name)} ({_clean(d.client_id)})")
    cli.out(f"  audience: {_clean(d.audience_name)} ({_clean(d.audience_id)})")
    cli.out(f"  scopes:   {_clean(', '.join(d.scopes)) or '(none)'}")
    cli.out(f"  purpose:  {_one_line(d.purpose)}")
    cli.out(f"  binding:  {_clean(d.binding_message)}")
    cli.out(f"  expires:  {_when(d.expires)} ({expires_in(d.expires, cli.now())})")


def _print_statement(cli: Cli, signed: SignedDecision, identity: DeviceIdentity) -> None:
    enrolment = identity.enrolment
    cli.out(f"Signing with device {_clean(enrolment.device_id)} ({enrolment.fingerprint}):")
    for line in signed.statement.decode("utf-8").split("\n"):
        cli.out(f"  {_clean(line)}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    everything = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in everything
    ]


def _scopes(delegation: Delegation) -> str:
    return _clean(",".join(delegation.scopes)) or "-"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _when(moment: datetime | None, missing: str = "-") -> str:
    if moment is None:
        return missing
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo is not None else "")


def _clean(text: str) -> str:
    """Server and QR text is untrusted: drop control characters (terminal escapes, newlines)."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)


def _one_line(text: str) -> str:
    return _clean(" ".join(text.split()))
