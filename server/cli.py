"""Vouchsim, the one command: `serve`, `migrate`, `devices`, and the companion's `companion`, `sidecar`, `testbed`.

`serve` runs the server; `devices list|revoke ID` is the operator's hand on trusted devices (a lost phone), straight
on the database and announced to running servers as the device API's own revocation is; `companion …` hands over to
the companion's CLI, `sidecar …` to the companion's side-car (a server and a rules-driven device for another
project's CI), and `testbed …` to the testbed controls' CLI (an HTTP client of `/testbed/`, which lives beside the
companion).

The companion runs as its own process (`python -m vouchsim.companion`) so the two halves never import each other:
they meet only over HTTP, as a real phone and server do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from vouchsim.server.device.errors import DeviceNotFound
from vouchsim.server.settings import (
    DEFAULT_PORT,
    LOG_FORMAT,
    Settings,
    settings_environment,
    settings_from_environment,
)

# Commands that are the companion's: run as their own processes, never imported (the halves meet over HTTP).
HANDED_OVER = {
    "companion": "vouchsim.companion",
    "sidecar": "vouchsim.companion.sidecar",
    "testbed": "vouchsim.companion.testbed_cli",
}


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the OAuth server and the /mcp resource server")
    _settings_options(serve)
    serve.add_argument(
        "--audiences-file", help="audience registry, JSON (VOUCHSIM_AUDIENCES_FILE; default fixtures/audiences.json)"
    )
    serve.add_argument(
        "--workers", type=int, help="server processes sharing the port (VOUCHSIM_WORKERS, default 1; >1: PostgreSQL)"
    )
    serve.add_argument(
        "--testbed",
        action="store_true",
        default=None,
        help="turn on the testbed controls under /testbed/ (VOUCHSIM_TESTBED=1; token: VOUCHSIM_TESTBED_TOKEN)",
    )
    serve.add_argument(
        "--registration",
        help="registration paths offered besides pre-registered clients: cimd,dcr (default), cimd, dcr or none "
        "(VOUCHSIM_REGISTRATION)",
    )
    serve.add_argument("--clients-file", help="pre-registered clients, JSON (VOUCHSIM_CLIENTS_FILE; default none)")
    serve.add_argument(
        "--cimd-allow-hosts",
        help="hosts whose client metadata documents may be fetched although loopback or private, e.g. "
        "127.0.0.1:9443 (VOUCHSIM_CIMD_ALLOW_HOSTS; testbeds only)",
    )
    serve.add_argument(
        "--cimd-ca-file", help="extra CA bundle (PEM) for fetching client metadata documents (VOUCHSIM_CIMD_CA_FILE)"
    )
    serve.add_argument(
        "--mcp-versions",
        help="MCP protocol versions /mcp offers, comma-separated (VOUCHSIM_MCP_VERSIONS; default all four: "
        "2026-07-28,2025-11-25,2025-06-18,2025-03-26)",
    )


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", help="public base URL (VOUCHSIM_ISSUER); default: from the Host header")
    parser.add_argument("--host", help="address to listen on (VOUCHSIM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port (VOUCHSIM_PORT, default {DEFAULT_PORT})")
    parser.add_argument("--database-url", help="SQLAlchemy URL (VOUCHSIM_DATABASE_URL)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vouchsim", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    _settings_options(migrate)
    devices = sub.add_parser("devices", help="list or revoke trusted devices (a lost phone)")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    listing = devices_sub.add_parser("list", help="every enrolled device, newest first")
    _settings_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per device, one per line")
    revoke = devices_sub.add_parser(
        "revoke", help="stop trusting a device at once, on every instance (its key, its event stream)"
    )
    revoke.add_argument("device_id", metavar="ID", help="the device's id (dev_…), as `vouchsim devices list` shows")
    revoke.add_argument(
        "--cut-connections",
        action="store_true",
        help="also unpair every connection it paired, so their tokens stop working (default: they survive)",
    )
    revoke.add_argument("--json", action="store_true", help="print the revocation as JSON")
    _settings_options(revoke)
    sub.add_parser("companion", help="the trusted-device companion (see `vouchsim companion --help`)", add_help=False)
    sub.add_parser(
        "sidecar",
        help="a server and a trusted device deciding by rules, for CI (see `vouchsim sidecar --help`)",
        add_help=False,
    )
    sub.add_parser("testbed", help="the testbed controls of a server (see `vouchsim testbed --help`)", add_help=False)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return settings_from_environment(
            issuer=args.issuer,
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            log_level=args.log_level,
            audiences_file=getattr(args, "audiences_file", None),
            workers=getattr(args, "workers", None),
            testbed=getattr(args, "testbed", None),
            registration=getattr(args, "registration", None),
            clients_file=getattr(args, "clients_file", None),
            cimd_allow_hosts=getattr(args, "cimd_allow_hosts", None),
            cimd_ca_file=getattr(args, "cimd_ca_file", None),
            mcp_versions=getattr(args, "mcp_versions", None),
        )
    except (ValueError, TypeError) as error:
        raise SystemExit(f"vouchsim: invalid setting: {error}") from None


def serve(settings: Settings) -> None:
    import uvicorn

    from vouchsim.server.delegation.audiences import AudienceFileError, AudienceRegistry
    from vouchsim.server.oauth.cimd.fetch import CaFileError, tls_context
    from vouchsim.server.oauth.preregistered import ClientsFileError, PreregisteredClients

    try:  # a bad file stops the command before anything runs
        audiences = AudienceRegistry.from_settings(settings)
        PreregisteredClients.from_settings(settings)
        if settings.cimd_ca_file:  # certifi's own bundle is loaded on the first fetch (~33 ms of CPU), if ever
            tls_context(settings.cimd_ca_file)
    except (AudienceFileError, ClientsFileError, CaFileError) as error:
        raise SystemExit(f"vouchsim: {error}") from None
    settings, generated_token = _with_testbed_token(settings)
    # The port first: one that is taken is one line, before any database is touched and before the banner.
    listener = _listen(settings.host, settings.port)
    try:
        # The schema is brought up to date here, once, so an unreachable database is one clear line, not a
        # traceback from inside the server's start-up (which then finds nothing left to migrate).
        schema = _migrate_apart(settings)
        base = settings.issuer or f"http://{_url_host(settings.host)}:{settings.port}"
        print(f"Vouchsim on {base}", flush=True)
        print(f"  MCP endpoint (point your client here): {base}/mcp", flush=True)
        print(f"  authorization server metadata: {base}/.well-known/oauth-authorization-server", flush=True)
        print(f"  protected resource metadata:   {base}/.well-known/oauth-protected-resource/mcp", flush=True)
        print(f"  MCP versions: {', '.join(settings.mcp_version_list)}", flush=True)
        print(f"  database: {schema}", flush=True)
        if settings.testbed:
            token = settings.testbed_token if generated_token else "from VOUCHSIM_TESTBED_TOKEN"
            print(f"  testbed controls: {base}/testbed/ (bearer token: {token})", flush=True)
        options: dict[str, Any] = {
            "host": settings.host,
            "port": settings.port,
            "log_level": settings.log_level,
            # Access lines are logged at INFO: above that level uvicorn would still build each one, then drop it.
            "access_log": settings.log_level.lower() in ("trace", "debug", "info"),
            "proxy_headers": False,  # the issuer logic reads X-Forwarded-Proto itself and ignores X-Forwarded-Host
            "server_header": False,
            # Event streams (a device watching its delegations) never end by themselves: give them a moment, then go.
            "timeout_graceful_shutdown": 3,
        }
        if settings.workers == 1:
            from vouchsim.server.app import create_app, serving

            server = uvicorn.Server(uvicorn.Config(serving(create_app(settings, audiences=audiences)), **options))
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[listener])
            if not server.started:
                raise SystemExit(3)  # uvicorn's status for a start-up that failed (it logged why)
            return
        from uvicorn.supervisors import Multiprocess

        # Each worker builds its own app from the environment (this supervising process builds none): hand it
        # these settings.
        print(f"  workers: {settings.workers}", flush=True)
        os.environ.update(settings_environment(settings))
        config = uvicorn.Config(
            "vouchsim.server.app:create_app_from_environment", factory=True, workers=settings.workers, **options
        )
        with contextlib.suppress(KeyboardInterrupt):
            Multiprocess(config, sockets=[listener]).run()
    finally:
        listener.close()


def _with_testbed_token(settings: Settings) -> tuple[Settings, bool]:
    """With the testbed on and no VOUCHSIM_TESTBED_TOKEN, a fresh token (and True): made here once, so every
    worker shares it, and printed once by `serve`. A token the user set is theirs already and is not printed."""
    if not settings.testbed or settings.testbed_token:
        return settings, False
    import msgspec

    from vouchsim.server.core.crypto import random_token

    return msgspec.structs.replace(settings, testbed_token=random_token(24)), True


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why there cannot be one."""
    try:
        return socket.create_server((host, port), family=_family(host), backlog=2048)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"vouchsim: port {port} on {host} is already in use (another server?); choose another with --port "
                "or VOUCHSIM_PORT"
            ) from None
        raise SystemExit(f"vouchsim: cannot listen on {host}:{port}: {error.strerror or error}") from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# `vouchsim migrate`'s line; `serve` reads what follows it from the child that migrated for it.
_MIGRATED = "database is up to date: "


def migrate(settings: Settings, *, quiet: bool = False) -> str:
    """Bring the schema up to date; the database as the banner shows it (password hidden, schema revision)."""
    from vouchsim.server.storage.migrate import DatabaseUnavailable, display_url, upgrade_database

    try:
        change = asyncio.run(upgrade_database(settings.database_url))
    except DatabaseUnavailable as error:
        raise SystemExit(f"vouchsim: {error}") from None
    shown = f"{display_url(settings.database_url)} ({change.describe()})"
    if not quiet:
        print(f"{_MIGRATED}{shown}")
    return shown


def _migrate_apart(settings: Settings) -> str:
    """`migrate`, with Alembic kept out of this process: a database at the newest schema is recognised here
    without it, and a new (empty) one gets the models' schema here too; one that is behind is migrated by
    `vouchsim migrate` in a child process, which prints what it did. A server that never imports Alembic (and
    Mako) is ~12 MiB smaller for as long as it runs."""
    from vouchsim.server.storage.migrate import DatabaseUnavailable, display_url, upgrade_without_alembic

    try:
        change = asyncio.run(upgrade_without_alembic(settings.database_url))
    except DatabaseUnavailable as error:
        raise SystemExit(f"vouchsim: {error}") from None
    if change is not None:
        return f"{display_url(settings.database_url)} ({change.describe()})"
    # The settings travel in the environment (as to workers): no password on a command line. -P as in `main`.
    child = subprocess.run(
        [sys.executable, "-P", "-m", "vouchsim.server", "migrate"],
        env={**os.environ, **settings_environment(settings)},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(child.returncode)  # its one line (or traceback) went to stderr, which it shares
    return child.stdout.strip().removeprefix(_MIGRATED)


def devices(settings: Settings, args: argparse.Namespace) -> None:
    """`vouchsim devices list|revoke ID`: brings the schema up to date first, as `serve` does."""
    migrate(settings, quiet=True)
    try:
        asyncio.run(_devices(settings, args))
    except DeviceNotFound as error:
        raise SystemExit(f"vouchsim: {error.description}") from None


async def _devices(settings: Settings, args: argparse.Namespace) -> None:
    import msgspec

    from vouchsim.server.core.clock import SystemClock
    from vouchsim.server.core.crypto import random_token
    from vouchsim.server.delegation.audiences import AudienceRegistry
    from vouchsim.server.delegation.service import DelegationService
    from vouchsim.server.delegation.tokens import SigningKeyStore
    from vouchsim.server.device.service import DeviceService
    from vouchsim.server.storage.engine import create_engine, create_sessionmaker
    from vouchsim.server.storage.events import EventBus
    from vouchsim.server.storage.repositories.connections import ConnectionRepository
    from vouchsim.server.storage.repositories.devices import DeviceRepository
    from vouchsim.server.storage.repositories.keys import get_or_create_key
    from vouchsim.server.storage.session import shared_transaction

    clock = SystemClock()
    engine = create_engine(settings.database_url)
    events = EventBus()  # on PostgreSQL a revocation is NOTIFYed: running servers drop it from every cache
    try:
        await events.start(settings.database_url)
        sessions = create_sessionmaker(engine, events)
        async with sessions() as session, session.begin():
            service = DeviceService(DeviceRepository(session), ConnectionRepository(session), clock)
            if args.devices_command == "list":
                _print_devices(await service.list_devices(), as_json=args.json, encode=msgspec.json.encode)
                return
            key = settings.secret_key or await get_or_create_key(session, "hmac", lambda: random_token(32), clock.now())
            hmac_key = key.encode()
            delegations = DelegationService(
                shared_transaction(session),
                AudienceRegistry.from_settings(settings),
                SigningKeyStore(hmac_key, clock, settings),
                events,
                clock,
                settings,
                hmac_key,
            )
            done = await service.revoke_device(
                args.device_id, cut_connections=args.cut_connections, delegations=delegations
            )
        if args.json:
            print(msgspec.json.encode(done).decode())
            return
        print(f"Revoked {done.device_id} ({done.name}, {done.fingerprint}) at {_instant(done.revoked_at)}.")
        if args.cut_connections:
            print(f"  connections cut: {len(done.connections_cut)} ({', '.join(done.connections_cut) or 'none live'})")
        else:
            print("  the connections it paired survive (pass --cut-connections to unpair them)")
        print(f"  pending delegations denied: {len(done.delegations_denied)}")
    finally:
        await events.stop()
        await engine.dispose()


def _print_devices(found: Sequence[Any], *, as_json: bool, encode: Any) -> None:
    if as_json:
        for device in found:
            print(encode(device).decode())
        return
    if not found:
        print("No devices are enrolled.")
        return
    rows = [("DEVICE", "NAME", "FINGERPRINT", "ENROLLED", "LAST SEEN", "STATUS", "CONNECTIONS")]
    for d in found:
        status = "active" if d.revoked_at is None else f"REVOKED {_instant(d.revoked_at)}"
        seen = _instant(d.last_seen_at) if d.last_seen_at else "never"
        rows.append(
            (d.device_id, d.name, d.fingerprint, _instant(d.enrolled_at), seen, status, str(d.live_connections))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _instant(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%d %H:%M:%SZ"))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HANDED_OVER:
        # Replace this process: exit codes, signals and the terminal pass straight through. -P: nothing from the
        # working directory on sys.path, so a project's own `vouchsim/` folder cannot stand in for ours.
        module = HANDED_OVER[argv[0]]
        os.execv(sys.executable, [sys.executable, "-P", "-m", module, *argv[1:]])  # noqa: S606
    args = build_parser().parse_args(argv)
    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the banner says which schema; its steps are noise
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "devices":
        devices(settings, args)
