"""`vouchsim testbed …`: the testbed controls of a running server (`vouchsim serve --testbed`), from a shell.

    vouchsim testbed journal [--client ID] [--kind KIND] [--since ID] [--limit N] [--follow] [--json] [--clear]
    vouchsim testbed fault add [--kind K] [--client ID] [--grant-type G] [--mcp-method M] [--tool T]
                               (--status N [--error CODE] [--error-description TEXT] [--retry-after S]
                                | --drop | --expire-token | --delay-ms MS) [--delay-ms MS] [--times N | --forever]
    vouchsim testbed fault list [--json]
    vouchsim testbed fault rm ID... | --all
    vouchsim testbed clock [show | advance SECONDS | reset]
    vouchsim testbed reset

Every command takes `--server URL` (`VOUCHSIM_SERVER_URL`, default http://127.0.0.1:8741) and
`--testbed-token TOKEN` (`VOUCHSIM_TESTBED_TOKEN`). Results go to stdout; a failure is one line on stderr and
exit 1 (2 for a usage error, 130 on Ctrl-C, which is how `journal --follow` is meant to end). `--json` prints
the API's own document (`journal --follow --json`: one entry per line). The HTTP work is
`companion.core.testbed.TestbedClient`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import httpx
import msgspec

from vouchsim.companion.core.errors import CompanionError
from vouchsim.companion.core.testbed import (
    KINDS,
    TOKEN_VARIABLE,
    ClockState,
    Fault,
    JournalEntry,
    TestbedClient,
    journal_line,
)

PROG = "vouchsim testbed"
SERVER_VARIABLE = "VOUCHSIM_SERVER_URL"
DEFAULT_SERVER = "http://127.0.0.1:8741"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line argparse rejects; exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


@dataclass(frozen=True)
class Out:
    stdout: TextIO

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def json(self, document: object) -> None:
        self.line(msgspec.json.encode(document).decode())


Command = Callable[[TestbedClient, argparse.Namespace, Out], Awaitable[int]]


def main(
    argv: Sequence[str] | None = None,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command and return its exit status."""
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(str(exc), file=err)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    server = (args.server or env.get(SERVER_VARIABLE) or DEFAULT_SERVER).rstrip("/")
    token = args.testbed_token or env.get(TOKEN_VARIABLE, "")
    if not token:
        print(f"{PROG}: no testbed token: pass --testbed-token or set {TOKEN_VARIABLE}", file=err)
        return EXIT_USAGE

    async def run() -> int:
        async with TestbedClient.connect(server, token, transport=http_transport) as client:
            command: Command = args.command_fn
            return await command(client, args, Out(stdout or sys.stdout))

    try:
        return asyncio.run(run())
    except CompanionError as exc:
        message = " ".join(filter(None, (str(exc), exc.hint)))
        print(f"{PROG}: {' '.join(message.split())}", file=err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_FAILURE


# --- the command line ----------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """`--server` and `--testbed-token`, accepted before the command and after it."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--server", default=default, help=f"the server's URL ({SERVER_VARIABLE}, default {DEFAULT_SERVER})"
    )
    parser.add_argument("--testbed-token", default=default, help=f"the testbed's bearer token ({TOKEN_VARIABLE})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The testbed controls of a Vouchsim server (`vouchsim serve --testbed`).")
    _connection_options(parser, top=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    journal = _command(commands, "journal", _journal, "the requests the server saw (this instance's journal)")
    journal.add_argument("--client", metavar="ID", help="only this client's requests")
    journal.add_argument("--kind", action="append", choices=KINDS, help="only requests of this kind (repeatable)")
    journal.add_argument("--since", metavar="ID", type=int, help="only entries after this entry id")
    journal.add_argument("--limit", type=_positive, help="at most this many (the newest)")
    journal.add_argument("--follow", "-f", action="store_true", help="then print each new entry as it comes")
    journal.add_argument("--json", action="store_true", help="machine-readable output")
    journal.add_argument("--clear", action="store_true", help="clear the journal instead of printing it")

    fault = commands.add_parser("fault", help="inject faults: add, list, rm")
    faults = fault.add_subparsers(title="fault commands", metavar="COMMAND", required=True)
    add = _command(faults, "add", _fault_add, "arm a fault")
    match = add.add_argument_group("match (all that are given must hold)")
    match.add_argument("--kind", choices=KINDS)
    match.add_argument("--client", metavar="ID", help="the request's client_id")
    match.add_argument("--grant-type", help="token requests of this grant_type")
    match.add_argument("--mcp-method", help="/mcp requests of this JSON-RPC method")
    match.add_argument("--tool", help="/mcp tools/call of this tool")
    action = add.add_argument_group("action (one of --status, --drop, --expire-token; --delay-ms alone or with one)")
    action.add_argument("--status", type=int, help="answer with this HTTP status (4xx, 5xx)")
    action.add_argument("--error", help="the OAuth error code of that answer (default: the usual one)")
    action.add_argument("--error-description", help="its error_description")
    action.add_argument("--retry-after", type=int, metavar="SECONDS", help="a Retry-After header on it")
    action.add_argument("--drop", action="store_true", help="close the connection without an answer")
    action.add_argument("--expire-token", action="store_true", help="treat the bearer token as expired (/mcp 401)")
    action.add_argument("--delay-ms", type=int, help="wait this long first")
    times = add.add_mutually_exclusive_group()
    times.add_argument("--times", type=_positive, default=1, help="how often it fires (default 1)")
    times.add_argument("--forever", action="store_true", help="fire until removed")
    add.add_argument("--json", action="store_true", help="machine-readable output")
    listing = _command(faults, "list", _fault_list, "the faults with their remaining counts")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    remove = _command(faults, "rm", _fault_rm, "remove faults")
    remove.add_argument("ids", nargs="*", metavar="ID")
    remove.add_argument("--all", action="store_true", help="remove every fault")

    clock = commands.add_parser("clock", help="the server's clock: show, advance SECONDS, reset")
    clock.set_defaults(command_fn=_clock_show)
    _connection_options(clock, top=False)
    moves = clock.add_subparsers(title="clock commands", metavar="COMMAND", required=False)
    _command(moves, "show", _clock_show, "the server's now and its offset from real time")
    advance = _command(moves, "advance", _clock_advance, "move the clock forward (everything that expires follows)")
    advance.add_argument("seconds", type=float)
    _command(moves, "reset", _clock_reset, "back to real time")

    _command(commands, "reset", _reset, "wipe clients, users, devices, tokens, sessions, delegations, faults, journal")
    return parser


def _command(
    commands: argparse._SubParsersAction[_Parser], name: str, fn: Command, text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text)
    parser.set_defaults(command_fn=fn)
    _connection_options(parser, top=False)
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


# --- journal -------------------------------------------------------------------------------------------------


async def _journal(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    if args.clear:
        await client.clear_journal()
        out.line("journal cleared")
        return EXIT_OK
    filters: dict[str, Any] = {"client_id": args.client, "kind": args.kind}
    if not args.follow:
        page = await client.journal_page(**filters, since=args.since, limit=args.limit)
        if args.json:
            out.json({"entries": page.entries})
        elif not page.entries:
            out.line("No requests journaled.")
        for entry in [] if args.json else page.entries:
            out.line(journal_line(entry))
        return EXIT_OK

    def emit(entry: JournalEntry) -> None:
        if args.json:
            out.json(entry)
        else:
            out.line(journal_line(entry))

    since = args.since
    if args.limit is not None:  # like `tail -n N -f`: the newest few first, then the live ones
        recent = await client.journal(**filters, since=since, limit=args.limit)
        for entry in recent:
            emit(entry)
        since = recent[-1].id if recent else since
    async with aclosing(client.follow(**filters, since=since)) as entries:
        async for entry in entries:
            emit(entry)
    return EXIT_OK  # follow ends only when interrupted


# --- faults --------------------------------------------------------------------------------------------------


async def _fault_add(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    match = {
        key: value
        for key, value in {
            "kind": args.kind,
            "client_id": args.client,
            "grant_type": args.grant_type,
            "mcp_method": args.mcp_method,
            "tool": args.tool,
        }.items()
        if value is not None
    }
    action: dict[str, Any] = {
        key: value
        for key, value in {
            "status": args.status,
            "error": args.error,
            "error_description": args.error_description,
            "retry_after": args.retry_after,
            "delay_ms": args.delay_ms,
        }.items()
        if value is not None
    }
    if args.drop:
        action["drop"] = True
    if args.expire_token:
        action["expire_token"] = True
    fault = await client.add_fault(match=match, action=action, times=None if args.forever else args.times)
    if args.json:
        out.json(fault)
    else:
        out.line(fault.id)
    return EXIT_OK


async def _fault_list(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    faults = await client.faults()
    if args.json:
        out.json({"faults": faults})
    elif not faults:
        out.line("No faults.")
    else:
        for fault in faults:
            out.line(fault_line(fault))
    return EXIT_OK


def fault_line(fault: Fault) -> str:
    left = "until removed" if fault.remaining is None else f"{fault.remaining} of {fault.times} left"
    match = " ".join(f"{key}={value}" for key, value in fault.match.items()) or "every request"
    action = " ".join(f"{key}={value}" for key, value in fault.action.items())
    return f"{fault.id}  {match}  →  {action}  ({left}, fired {fault.fired})"


async def _fault_rm(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    if args.all:
        await client.remove_faults()
        out.line("every fault removed")
        return EXIT_OK
    if not args.ids:
        raise CompanionError("Name the faults to remove, or pass --all.")
    for fault_id in args.ids:
        await client.remove_fault(fault_id)
        out.line(f"removed {fault_id}")
    return EXIT_OK


# --- clock and reset -----------------------------------------------------------------------------------------


def clock_line(state: ClockState) -> str:
    offset = state.offset_seconds
    ahead = "real time" if offset == 0 else f"{offset:+g} s from real time"
    return f"{state.now.isoformat().replace('+00:00', 'Z')}  ({ahead})"


async def _clock_show(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    out.line(clock_line(await client.clock()))
    return EXIT_OK


async def _clock_advance(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    out.line(clock_line(await client.advance(args.seconds)))
    return EXIT_OK


async def _clock_reset(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    out.line(clock_line(await client.reset_clock()))
    return EXIT_OK


async def _reset(client: TestbedClient, args: argparse.Namespace, out: Out) -> int:
    await client.reset()
    out.line("reset: clients, users, devices, tokens, sessions, delegations, faults and journal wiped")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
