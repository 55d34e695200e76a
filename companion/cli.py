"""Headless companion commands: `python -m companion enrol | scan | connections | unpair | whoami`.

Each command prints results on stdout and, on failure, one line on stderr: exit 2 for a usage error,
1 for a failure, never a traceback. Everything the commands do lives in `companion.core`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
import unicodedata
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

import httpx
import msgspec

from companion.core.client import MAX_NAME_LENGTH, DeviceApiClient
from companion.core.config import DEFAULT_SERVER_URL, CompanionConfig, ConfigError, load_config
from companion.core.errors import AlreadyEnrolledError, CompanionError
from companion.core.keystore import Enrolment, Keystore
from companion.core.qr import PAIRING_SCHEME, decode_qr, parse_pairing_uri
from companion.core.schemas import Connection, ConnectionList, PairingApproval, PairingContext

PROG = "vouchsim companion"
USER_AGENT = "vouchsim-companion"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line argparse rejects; reported with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Raise instead of exiting so main() can print to the injected stderr and return a status.
        raise UsageError(f"{self.prog}: {message} (see --help)")


@dataclass(frozen=True)
class Cli:
    """What a command needs: parsed config, the keystore, streams, and the HTTP transport (tests inject)."""

    config: CompanionConfig
    keystore: Keystore
    transport: httpx.AsyncBaseTransport | None
    stdin: TextIO
    stdout: TextIO

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

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
    cli = Cli(config, Keystore(config.state_dir), http_transport, stdin or sys.stdin, stdout or sys.stdout)
    return _run(args.command_fn, cli, args, err)


def _run(command: Command, cli: Cli, args: argparse.Namespace, err: TextIO) -> int:
    try:
        return asyncio.run(command(cli, args))
    except CompanionError as exc:
        print(f"{PROG}: {_one_line(' '.join(filter(None, (str(exc), exc.hint))))}", file=err)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, never a traceback, but say it is one
        print(f"{PROG}: internal error ({exc.__class__.__name__}: {_one_line(str(exc))})", file=err)
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The headless Vouchsim companion (your trusted device).")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

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
    return parser


def _command(
    commands: argparse._SubParsersAction[_Parser], name: str, fn: Command, help_text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command_fn=fn)
    parser.add_argument("--state", metavar="DIR", help="state directory (default: ./var/companion)")
    if name == "enrol":
        parser.add_argument("--server", metavar="URL", help=f"server URL (default: {DEFAULT_SERVER_URL})")
    elif name != "whoami":  # whoami reads local state only
        parser.add_argument("--server", metavar="URL", help="server URL (default: the enrolled server)")
    return parser


# --- commands ------------------------------------------------------------------------------------------


async def _enrol(cli: Cli, args: argparse.Namespace) -> int:
    server = cli.config.server_for(None)
    existing = cli.keystore.read_enrolment()
    if existing is not None and not args.force:
        if server not in (existing.server_url, existing.issuer.rstrip("/")):
            raise AlreadyEnrolledError(
                f"This companion is already enrolled with {existing.server_url}, not {server}."
            )
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


async def _connections(cli: Cli, args: argparse.Namespace) -> int:
    enrolment = cli.keystore.load_identity().enrolment
    async with cli.http(cli.config.server_for(enrolment.server_url)) as http:
        connections = await DeviceApiClient(http, cli.keystore).connections()
    if args.json:
        cli.out(msgspec.json.encode(ConnectionList(connections=connections)).decode())
    elif not connections:
        cli.out("No connections.")
    else:
        for line in connection_table(connections):
            cli.out(line)
    return EXIT_OK


async def _unpair(cli: Cli, args: argparse.Namespace) -> int:
    enrolment = cli.keystore.load_identity().enrolment
    async with cli.http(cli.config.server_for(enrolment.server_url)) as http:
        connection = await DeviceApiClient(http, cli.keystore).revoke_connection(args.connection_id)
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


# --- helpers -------------------------------------------------------------------------------------------


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
    cli.out(
        f"Approved. Type this code on the authorization page (valid until {_when(approval.code_expires_at)}):"
    )
    cli.out(format_pairing_code(approval.pairing_code))  # last line: scripts read it with `tail -n 1`


def format_pairing_code(code: str) -> str:
    """`XXXX-XXXX`, whatever dash or spacing the server used; anything unexpected is shown as sent."""
    compact = "".join(code.split()).replace("-", "").upper()
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else _clean(code)


def connection_table(connections: Sequence[Connection]) -> list[str]:
    header = ("ID", "CLIENT", "SCOPES", "CREATED", "LAST USED", "STATUS")
    rows = [header] + [
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


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
