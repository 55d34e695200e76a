"""Headless companion commands: `python -m vouchsim.companion enrol | scan | connections | unpair | whoami | forget`,
for delegations, `pending | approve | deny | history | revoke | watch`, and `authorize-url` for other projects' CI
(the person at the authorization page, headless).

Each command prints results on stdout and, on failure, one line on stderr: exit 2 for a usage error,
1 for a failure, never a traceback. `watch` also reports its connection on stderr, keeping stdout for one
line per decision. Everything the commands do lives in `companion.core`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO
from urllib.parse import urlsplit

import httpx
import msgspec

from vouchsim.companion.core.authorization import AUTHORIZE_PREFIX, AuthorizationPage, authorize_url
from vouchsim.companion.core.client import MAX_NAME_LENGTH, DeviceApiClient
from vouchsim.companion.core.config import DEFAULT_SERVER_URL, CompanionConfig, ConfigError, load_config
from vouchsim.companion.core.decisions import Decision, SignedDecision
from vouchsim.companion.core.errors import (
    AlreadyEnrolledError,
    CompanionError,
    DelegationClosedError,
    DeviceRevokedError,
)
from vouchsim.companion.core.follower import PAST, AutoDecider, LinkEvent, Policy, decide_as_they_come, policy_for
from vouchsim.companion.core.keystore import DeviceIdentity, Enrolment, Keystore
from vouchsim.companion.core.qr import PAIRING_SCHEME, decode_qr, is_url, parse_pairing_uri
from vouchsim.companion.core.rules import load_rules
from vouchsim.companion.core.schemas import (
    Connection,
    ConnectionList,
    Delegation,
    DelegationList,
    PairingApproval,
    PairingContext,
)
from vouchsim.companion.core.signing import Clock
from vouchsim.companion.core.text import (
    clean,
    count,
    decision_line,
    expires_in,
    fit,
    pairing_code,
    safe,
    scopes_of,
    sentence,
    table,
    when,
)

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
        print(f"{PROG}: {clean(text)}", file=self.stderr, flush=True)

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
        args, config = parse_command_line(argv, os.environ if environ is None else environ)
    except UsageError as exc:
        print(clean(str(exc)), file=err)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{PROG}: {clean(str(exc))}", file=err)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command_fn is None:  # bare `vouchsim companion`: the TUI; Textual is imported only then
        from vouchsim.companion.app import run

        return run(config)
    if args.command_fn is _demo:  # the demo runs its own server and state: no config, no keystore
        from vouchsim.companion.demo.run import run_demo

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


def parse_command_line(
    argv: Sequence[str] | None, environ: Mapping[str, str]
) -> tuple[argparse.Namespace, CompanionConfig]:
    """The command and the config it runs with. `--state` and `--server` are taken before the command (the TUI's,
    which has no command) or after it (each command's), over the environment's variables."""
    args = build_parser().parse_args(argv)
    config = load_config(
        environ,
        state_dir=args.state or args.app_state,
        server_url=getattr(args, "server", None) or args.app_server,
        testbed_token=args.app_testbed_token,
    )
    return args, config


def _run(command: Command, cli: Cli, args: argparse.Namespace, err: TextIO) -> int:
    try:
        return asyncio.run(_until_interrupted(command(cli, args)))
    except CompanionError as exc:
        print(f"{PROG}: {clean(sentence(str(exc), exc.hint))}", file=err)
    except KeyboardInterrupt:
        if not args.quiet_interrupt:  # Ctrl-C is how a watcher is meant to stop: nothing to report
            print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback, but say it is one
        print(f"{PROG}: internal error ({exc.__class__.__name__}: {clean(str(exc))})", file=err)
    return EXIT_FAILURE


async def _until_interrupted(work: Coroutine[Any, Any, int]) -> int:
    """`work`, which Ctrl-C (SIGINT) cancels, and keeps cancelling every 0.1 s until it ends: a library that swallows
    one cancellation (httpx connecting, under load, was seen to) must not leave a watcher reconnecting for ever.
    Ends in KeyboardInterrupt once interrupted, as `asyncio.run` would."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def keep_cancelling() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(0.1, keep_cancelling)

    def on_interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            keep_cancelling()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (not the main thread, or Windows)
        return await work
    try:
        return await work
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The Vouchsim companion (your trusted device): the TUI without a command.")
    # No command: the TUI (see main()), which takes the same two options as every command.
    parser.add_argument("--state", dest="app_state", metavar="DIR", help="state directory (default: ./var/companion)")
    parser.add_argument("--server", dest="app_server", metavar="URL", help="server URL (default: the enrolled server)")
    parser.add_argument(
        "--testbed-token",
        dest="app_testbed_token",
        metavar="TOKEN",
        help="the server's testbed token (VOUCHSIM_TESTBED_TOKEN): the TUI then shows the Timeline",
    )
    commands = parser.add_subparsers(title="commands", required=False, metavar="COMMAND")
    parser.set_defaults(command_fn=None, state=None, server=None, quiet_interrupt=False)

    enrol = _command(commands, "enrol", _enrol, "enrol this device with a server")
    enrol.add_argument("--name", help=f"device name shown to the user (1-{MAX_NAME_LENGTH} characters)")
    enrol.add_argument("--force", action="store_true", help="enrol a new key, forgetting the current one")

    scan = _command(commands, "scan", _scan, "claim a pairing from its QR, then approve or decline it")
    scan.add_argument(
        "source",
        metavar="IMAGE_PATH_OR_URL",
        help="QR image file or URL, the pairing URI, or the authorization URL itself (read as a browser would)",
    )
    scan.add_argument("--approve", action="store_true", help="approve without asking")
    scan.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")

    listing = _command(commands, "connections", _connections, "list the runtime connections")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    unpair = _command(commands, "unpair", _unpair, "revoke a runtime connection and its tokens")
    unpair.add_argument("connection_id", metavar="CONNECTION_ID")

    forget = _command(
        commands, "forget", _forget, "forget this device: revoke it on the server, then delete its key here"
    )
    forget.add_argument(
        "--cut-connections",
        action="store_true",
        help="also unpair every connection this device paired (default: they keep working)",
    )
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")

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
    location = await authorize_url(
        args.url,
        cli.keystore,
        http_for=cli.http,
        device_name=default_device_name(),
        server_url=args.server,
        on_enrolled=lambda server: cli.note(f"Enrolled with {server}."),
    )
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


ScanOutcome = Literal["approved", "declined", "claimed"]


class ScanResult(msgspec.Struct, kw_only=True):
    """`scan --json`: the pairing, what became of it, and (for an authorization URL) where the browser went."""

    pairing: PairingContext
    outcome: ScanOutcome
    pairing_code: str | None = None
    code_expires_at: datetime | None = None
    redirect: str | None = None


class _LeftClaimed(Exception):
    """Nobody approved or declined (no terminal, no --approve): the pairing stays claimed."""


@dataclass
class _Scan:
    """One `scan`: the pairing it claimed and what became of it, shown as lines or as one JSON object."""

    cli: Cli
    args: argparse.Namespace
    client: DeviceApiClient
    context: PairingContext | None = None
    approval: PairingApproval | None = None
    declined: bool = False
    redirect: str | None = None

    @property
    def lines(self) -> bool:
        return not self.args.json

    async def pair(self, payload: str) -> str | None:
        """Claim, show, then approve (the pairing code) or decline (None), as the person answers."""
        self.context = context = await self.client.claim(payload)
        if self.lines:
            _print_context(self.cli, context)
        question = _confirm_on_stderr if self.args.json else _confirm
        if self.args.approve or (_interactive(self.cli) and question(self.cli, "Approve this pairing? [y/N] ")):
            self.approval = await self.client.approve_pairing(context.pairing_id)
            return self.approval.pairing_code
        if not _interactive(self.cli):
            raise _LeftClaimed
        declined = await self.client.decline_pairing(context.pairing_id)
        self.declined = True
        if self.lines:
            self.cli.out(f"Declined pairing {clean(declined.pairing_id)}; the client is told access_denied.")
        return None

    def report(self) -> None:
        context = self.context
        assert context is not None
        outcome: ScanOutcome = "approved" if self.approval else "declined" if self.declined else "claimed"
        if self.args.json:
            approval = self.approval
            result = ScanResult(
                pairing=context,
                outcome=outcome,
                pairing_code=pairing_code(approval.pairing_code) if approval else None,
                code_expires_at=approval.code_expires_at if approval else None,
                redirect=self.redirect,
            )
            self.cli.out(msgspec.json.encode(result).decode())
        elif outcome == "claimed":
            self.cli.out("Nothing approved: the pairing stays claimed until it expires. To approve it, run:")
            self.cli.out(f"  {_approve_command(self.args)}")
        elif self.redirect is not None:  # the page was this command's own: it typed the code itself
            what = "Approved; the code was typed on the page" if self.approval else "The page"
            self.cli.out(f"{what}. It sends the browser back to the client (open this URL to deliver it):")
            self.cli.out(self.redirect)  # last line: scripts read it with `tail -n 1`
        elif self.approval is not None:
            _print_approval(self.cli, self.approval)


async def _scan(cli: Cli, args: argparse.Namespace) -> int:
    enrolment = cli.keystore.load_identity().enrolment  # fail before any decoding when not enrolled
    async with cli.http(cli.config.server_for(enrolment.server_url)) as http:
        client = DeviceApiClient(http, cli.keystore, clock=cli.clock)
        scan = _Scan(cli, args, client)
        try:
            if _is_authorization_url(args.source, client.server_url):
                # The page's QR can only be read by the browser that opened the page (its cookie), so this command
                # is that browser: it reads the QR as the headless person does, and types the code itself.
                async with AuthorizationPage(client) as page:
                    scan.redirect = await page.complete(args.source, pair=scan.pair)
            else:
                payload = await _read_payload(args.source, http)
                parse_pairing_uri(payload, enrolment.issuer)  # the client checks again; this fails before I/O
                await scan.pair(payload)
        except _LeftClaimed:
            pass
    scan.report()
    return EXIT_OK


def _is_authorization_url(source: str, server_url: str) -> bool:
    """An authorization URL (or pairing page) of the enrolled server, as opposed to a QR image's URL."""
    if not is_url(source):
        return False
    parts, server = urlsplit(source), urlsplit(server_url)
    return (
        (parts.scheme, parts.netloc) == (server.scheme, server.netloc)
        and parts.path.startswith(AUTHORIZE_PREFIX)
        and not parts.path.endswith(".png")
    )


def _listing(
    cli: Cli,
    args: argparse.Namespace,
    document: msgspec.Struct,
    rows: Sequence[object],
    *,
    empty: str,
    lines: Callable[[], Iterable[str]],
) -> int:
    """A list command's output: the JSON `document` with --json, else `empty` or the `lines()` (built only when
    shown)."""
    if args.json:
        cli.out(msgspec.json.encode(document).decode())
    elif not rows:
        cli.out(empty)
    else:
        for line in lines():
            cli.out(line)
    return EXIT_OK


async def _connections(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        connections = await client.connections()
    return _listing(
        cli, args, ConnectionList(connections=connections), connections,
        empty="No connections.", lines=lambda: connection_table(connections),
    )  # fmt: skip


async def _unpair(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        connection = await client.revoke_connection(args.connection_id)
    cli.out(
        f"Unpaired {clean(connection.connection_id)} ({clean(connection.client_name)}), "
        f"revoked at {when(connection.revoked_at)}."
    )
    return EXIT_OK


async def _forget(cli: Cli, args: argparse.Namespace) -> int:
    """Revoke this device on the server (a lost phone's twin), then wipe its key and enrolment here. A device the
    server revoked already (the operator's `vouchsim devices revoke`) is wiped all the same."""
    enrolment = cli.keystore.load_identity().enrolment
    who = f"{clean(enrolment.device_id)} ({clean(enrolment.name)}, {clean(enrolment.fingerprint)})"
    question = f"Forget {who}? Its key stops working on {clean(enrolment.server_url)} for good. [y/N] "
    if _interactive(cli) and not args.yes and not _confirm(cli, question):
        cli.note("Nothing was forgotten.")
        return EXIT_FAILURE
    async with _client(cli) as client:
        try:
            done = await client.forget(cut_connections=args.cut_connections)
        except DeviceRevokedError:
            done = None
    cli.keystore.wipe()
    if done is None:
        cli.out(f"{who} was already revoked on the server.")
    else:
        cli.out(f"Forgot {who}: revoked on the server at {when(done.revoked_at)}.")
        if args.cut_connections:
            cli.out(f"Connections cut: {len(done.connections_cut)}.")
        else:
            cli.out("The connections it paired keep working (unpair them with --cut-connections next time).")
        if done.delegations_denied:
            cli.out(f"Pending delegations denied: {len(done.delegations_denied)}.")
    cli.out(f"Deleted this device's key and enrolment from {cli.config.state_dir}.")
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
        empty="No pending delegations.", lines=lambda: pending_table(delegations, cli.now()),
    )  # fmt: skip


async def _history(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        delegations = await client.delegations("history")
    return _listing(
        cli, args, DelegationList(delegations=delegations), delegations,
        empty="No decided delegations yet.", lines=lambda: history_table(delegations),
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
    cli.out(decision_line(PAST[decision], result))
    return EXIT_OK


async def _revoke(cli: Cli, args: argparse.Namespace) -> int:
    async with _client(cli) as client:
        delegation = await client.revoke_delegation(args.delegation_id)
    cli.out(decision_line(delegation.status, delegation))
    return EXIT_OK


async def _watch(cli: Cli, args: argparse.Namespace) -> int:
    """The core's follower and decision policy; one line per outcome on stdout, the connection on stderr."""
    policy = _policy(args)  # a broken rules file fails before any I/O
    timer = asyncio.timeout(args.timeout)
    async with _client(cli) as client:

        async def ask(delegation: Delegation) -> Decision:
            _print_delegation(cli, delegation)
            cli.stdout.write(f"Approve {clean(delegation.delegation_id)}? [y/N] ")
            cli.stdout.flush()
            answer = await _read_line(cli.stdin)
            return "approve" if answer.strip().lower() in ("y", "yes") else "deny"

        decider = AutoDecider(
            client,
            policy,
            ask=ask if _interactive(cli) else None,
            unasked="no terminal to ask on",
            on_outcome=lambda outcome: cli.out(outcome.line),
        )
        try:
            async with timer:
                await decide_as_they_come(
                    decider, once=args.once, on_link=_link_notes(cli, client.server_url), sleep=cli.sleep
                )
        except TimeoutError:
            if not timer.expired():
                raise
            cli.note(f"Stopped after {args.timeout:g} s ({count(decider.decided, 'decision')}).")
    return EXIT_OK


def _link_notes(cli: Cli, server_url: str) -> Callable[[LinkEvent], None]:
    """The follower's link, as `watch` reports it on stderr."""

    def note(event: LinkEvent) -> None:
        if event.state == "online":
            verb = "Reconnected; watching" if event.reconnected else "Watching"
            cli.note(f"{verb} delegations at {server_url}.")
        elif event.state == "offline":
            cli.note(f"{event.problem.rstrip('.')}; reconnecting in {event.retry_in:g} s.")

    return note


def _policy(args: argparse.Namespace) -> Policy:
    if args.approve_all:
        return policy_for("approve-all")
    if args.deny_all:
        return policy_for("deny-all")
    return policy_for(load_rules(args.rules))


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


def _confirm_on_stderr(cli: Cli, question: str) -> bool:
    """With --json, stdout is the JSON document only: ask on stderr."""
    cli.stderr.write(question)
    cli.stderr.flush()
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
        ("enrolled_at", when(enrolment.enrolled_at)),
    )
    for label, value in rows:
        cli.out(f"{label + ':':<13}{clean(value)}")


def _print_context(cli: Cli, context: PairingContext) -> None:
    cli.out(f"Pairing request {clean(context.pairing_id)}")
    cli.out(f"  client:   {clean(context.client_name)} ({clean(context.client_id)})")
    if context.verified_host:
        cli.out(f"  verified: {clean(context.verified_host)} (the client's address, checked by the server)")
    if context.localhost_only:
        cli.out("  warning:  it only returns to a program on the computer that started the sign-in")
    cli.out(f"  redirect: {clean(context.redirect_host)}")
    cli.out(f"  scopes:   {clean(', '.join(context.scopes)) or '(none)'}")
    cli.out(f"  expires:  {when(context.expires_at)}")


def _print_approval(cli: Cli, approval: PairingApproval) -> None:
    cli.out(f"Approved. Type this code on the authorization page (valid until {when(approval.code_expires_at)}):")
    cli.out(pairing_code(approval.pairing_code))  # last line: scripts read it with `tail -n 1`


def connection_table(connections: Sequence[Connection]) -> list[str]:
    header = ("ID", "CLIENT", "SCOPES", "CREATED", "LAST USED", "STATUS")
    rows = [
        (
            clean(c.connection_id),
            clean(c.client_name),
            clean(",".join(c.scopes)),
            when(c.created_at),
            when(c.last_used_at, "never"),
            "active" if c.revoked_at is None else f"revoked {when(c.revoked_at)}",
        )
        for c in connections
    ]
    return table(header, rows)


PURPOSE_WIDTH = 40


def pending_table(delegations: Sequence[Delegation], now: datetime) -> list[str]:
    header = ("ID", "CLIENT", "AUDIENCE", "SCOPES", "PURPOSE", "BINDING MESSAGE", "EXPIRES IN")
    rows = [
        (
            clean(d.delegation_id),
            clean(d.client_name),
            clean(d.audience_id),
            scopes_of(d),
            fit(clean(d.purpose), PURPOSE_WIDTH),
            clean(d.binding_message),
            expires_in(d.expires, now),
        )
        for d in delegations
    ]
    return table(header, rows)


def history_table(delegations: Sequence[Delegation]) -> list[str]:
    header = ("ID", "CLIENT", "AUDIENCE", "SCOPES", "STATUS", "DECIDED", "BY")
    rows = [
        (
            clean(d.delegation_id),
            clean(d.client_name),
            clean(d.audience_id),
            scopes_of(d),
            clean(d.status),
            when(d.decided_at),
            clean(d.decided_by or "-"),
        )
        for d in delegations
    ]
    return table(header, rows)


def _print_delegation(cli: Cli, delegation: Delegation) -> None:
    d = delegation
    cli.out(f"Delegation {clean(d.delegation_id)} ({clean(d.status)})")
    cli.out(f"  client:   {clean(d.client_name)} ({clean(d.client_id)})")
    cli.out(f"  audience: {clean(d.audience_name)} ({clean(d.audience_id)})")
    cli.out(f"  scopes:   {clean(', '.join(d.scopes)) or '(none)'}")
    cli.out(f"  purpose:  {clean(d.purpose)}")
    cli.out(f"  binding:  {clean(d.binding_message)}")
    cli.out(f"  expires:  {when(d.expires)} ({expires_in(d.expires, cli.now())})")


def _print_statement(cli: Cli, signed: SignedDecision, identity: DeviceIdentity) -> None:
    enrolment = identity.enrolment
    cli.out(f"Signing with device {clean(enrolment.device_id)} ({enrolment.fingerprint}):")
    for line in signed.statement.decode("utf-8").split("\n"):
        cli.out(f"  {safe(line)}")
