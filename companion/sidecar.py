"""`vouchsim sidecar --rules FILE --state DIR [--port P]`: a Vouchsim server and a trusted device, for another
project's CI, in one command.

It starts the server (`python -m vouchsim.server serve`, SQLite under `DIR/server/` unless `--database-url` says
otherwise; on `--port`, else the port of the state directory's last run if it is free, else a free one), waits until
it answers `/healthz`, enrols the device in `DIR/device/` unless it is enrolled there already, and runs the rules
watcher (`companion.core.follower`, as `vouchsim companion watch --rules` does). Once the watcher
is connected it prints, on stdout, the lines a CI step appends to `$GITHUB_ENV`:

    VOUCHSIM_SERVER_URL=http://127.0.0.1:8741
    VOUCHSIM_MCP_URL=http://127.0.0.1:8741/mcp
    VOUCHSIM_COMPANION_STATE=/abs/DIR/device
    VOUCHSIM_SIDECAR_PID=12345

and closes stdout, so whoever reads it sees the end of the output exactly when the side-car is ready (or has
failed). The companion's commands read VOUCHSIM_SERVER_URL and VOUCHSIM_COMPANION_STATE, so `vouchsim companion
authorize-url URL` needs no options after them; `kill $VOUCHSIM_SIDECAR_PID` stops it all. Everything else
(start-up, the link, one line per decision) goes to stderr. SIGTERM, SIGHUP or Ctrl-C stop the watcher and the
server; a server that dies stops the side-car with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

import httpx

from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.errors import ApiError, CompanionError
from vouchsim.companion.core.follower import AutoDecider, LinkEvent, Policy, decide_as_they_come, policy_for
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.rules import load_rules
from vouchsim.companion.core.text import clean, sentence
from vouchsim.companion.server_process import ServerProcess, ServerStartError, exit_on_termination

PROG: Final = "vouchsim sidecar"
DEVICE_NAME: Final = "Vouchsim side-car device"
READY_TIMEOUT: Final = 30.0  # from a healthy server to a connected watcher
SERVER_POLL: Final = 0.5  # how often the side-car looks whether its server is still running
PORT_FILE: Final = "port"  # the port of the last run, under DIR/server
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TERMINATED: Final = (128 + 1, 128 + 15)  # SIGHUP, SIGTERM (exit_on_termination): a stop that was asked for


class SidecarError(CompanionError):
    default_message = "The side-car stopped."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="A Vouchsim server and a trusted device deciding delegations by rules, for another project's CI. "
        "Prints the lines to append to $GITHUB_ENV once ready; SIGTERM or Ctrl-C stops everything.",
    )
    parser.add_argument("--rules", metavar="FILE", type=Path, required=True, help="the TOML rules file (decisions)")
    parser.add_argument("--state", metavar="DIR", type=Path, required=True, help="where the database and device live")
    parser.add_argument(
        "--port",
        metavar="P",
        type=int,
        help="the server's port on 127.0.0.1 (default: the last run's, else a free one)",
    )
    parser.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL (default: SQLite under DIR/server)")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run until stopped; the exit status. `stdout` is for tests: by default the process's own stdout is closed
    (pointed at /dev/null) once the ready lines are out."""
    args = build_parser().parse_args(argv)
    try:
        policy = policy_for(load_rules(args.rules))  # a broken rules file fails before anything starts
    except CompanionError as exc:
        return _fail(exc)
    state = args.state.expanduser().resolve()
    (state / "server").mkdir(parents=True, exist_ok=True)
    port = args.port or _last_port(state / "server")
    server = ServerProcess(state / "server", port=port, database_url=args.database_url)
    (state / "server" / PORT_FILE).write_text(f"{server.port}\n")
    exit_on_termination()  # SIGTERM and SIGHUP unwind through the `finally` below, as Ctrl-C does
    try:
        _note(f"starting the server on {server.base_url} (state in {state})")
        server.start(on_progress=lambda line: _note(f"server: {line}"))
        status = asyncio.run(_serve(server, Keystore(state / "device"), policy, stdout))
        exit_on_termination()  # the loop's own handlers are gone with it: guard the stop below again
        return status
    except ServerStartError as exc:
        _note(str(exc))
        return EXIT_FAILURE
    except CompanionError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        _note("interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # SIGTERM or SIGHUP while the server was starting (exit_on_termination)
        if exc.code in TERMINATED:
            _note("stopping, as asked")
            return EXIT_OK
        raise
    finally:
        server.stop()
        _note(f"the server on {server.base_url} is stopped")


async def _serve(server: ServerProcess, keystore: Keystore, policy: Policy, stdout: TextIO | None) -> int:
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=10.0, headers={"User-Agent": "vouchsim-sidecar"}
    ) as http:
        device = DeviceApiClient(http, keystore)
        await _enrolled(device, keystore)
        online = asyncio.Event()

        def link(event: LinkEvent) -> None:
            if event.state == "online":
                online.set()
                _note(f"{'reconnected; ' if event.reconnected else ''}deciding delegations by the rules")
            elif event.state == "offline":
                _note(f"{event.problem.rstrip('.')}; reconnecting in {event.retry_in:g} s")

        decider = AutoDecider(
            device, policy, unasked="nobody to ask in a side-car", on_outcome=lambda outcome: _note(outcome.line)
        )
        signals = _stop_signals()
        watcher: asyncio.Task[Any] = asyncio.create_task(decide_as_they_come(decider, on_link=link), name="watcher")
        gone: asyncio.Task[Any] = asyncio.create_task(_server_exit(server), name="server")
        ready: asyncio.Task[Any] = asyncio.create_task(online.wait(), name="ready")
        stop: asyncio.Task[Any] = asyncio.create_task(signals.get(), name="stop")
        tasks = (watcher, gone, ready, stop)
        try:
            done, _ = await asyncio.wait(tasks, timeout=READY_TIMEOUT, return_when="FIRST_COMPLETED")
            if ready in done:
                _announce(server, keystore, stdout)
                done, _ = await asyncio.wait({watcher, gone, stop}, return_when="FIRST_COMPLETED")
            if stop in done:
                signum = stop.result()
                _note("interrupted" if signum == signal.SIGINT else f"stopping on {signal.Signals(signum).name}")
                return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
            _raise_from(done, "the watcher stopped" if ready in done else "the watcher did not connect in time")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _last_port(folder: Path) -> int | None:
    """The port this state directory's server had last time, when it is free again: the same URL, so the same
    issuer, so the device enrolled then still fits (a new port would mean a new issuer and a new enrolment)."""
    try:
        port = int((folder / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


def _stop_signals() -> asyncio.Queue[int]:
    """SIGTERM, SIGHUP and SIGINT, as they arrive, for the loop to stop on in order (not as exceptions thrown into
    whichever task happens to run)."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[int] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(signum, arrived.put_nowait, signum)
    return arrived


async def _enrolled(device: DeviceApiClient, keystore: Keystore) -> None:
    """Enrol unless this state directory holds a device the server still knows (a fresh database forgets it)."""
    enrolment = keystore.read_enrolment()
    if enrolment is not None and device.server_url in (enrolment.server_url, enrolment.issuer.rstrip("/")):
        try:
            await device.me()
        except ApiError as exc:
            if exc.status >= 500:
                raise
            _note(f"the server does not know device {enrolment.device_id} ({exc.error_code}): enrolling a new key")
        else:
            _note(f"device {enrolment.device_id} ({enrolment.fingerprint}) is enrolled")
            return
    info = await device.enrol(DEVICE_NAME, new_key=enrolment is not None)
    _note(f"enrolled device {info.device_id} ({info.fingerprint})")


async def _server_exit(server: ServerProcess) -> int:
    """Returns (with the exit status) once the server process has exited; a local check, no request."""
    process = server.process
    assert process is not None
    # A child's exit cannot be awaited without a thread, and asyncio.run would wait for that thread at shutdown.
    while (returncode := process.poll()) is None:  # noqa: ASYNC110
        await asyncio.sleep(SERVER_POLL)
    return returncode


def _raise_from(done: set[asyncio.Task[Any]], why: str) -> NoReturn:
    for task in done:
        if task.get_name() == "server":
            raise SidecarError(f"The server exited with status {task.result()}; see its log.")
        if task.get_name() == "watcher":
            task.result()  # a refusal the watcher could not get past
    raise SidecarError(sentence(f"The side-car stopped: {why}"))


def _announce(server: ServerProcess, keystore: Keystore, stdout: TextIO | None) -> None:
    """The ready lines on stdout; then stdout is closed, which is how a reader knows the side-car is ready."""
    lines = (
        f"VOUCHSIM_SERVER_URL={server.base_url}",
        f"VOUCHSIM_MCP_URL={server.mcp_url}",
        f"VOUCHSIM_COMPANION_STATE={keystore.state_dir}",
        f"VOUCHSIM_SIDECAR_PID={os.getpid()}",
    )
    out = stdout or sys.stdout
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()
    if stdout is None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    _note(f"ready: MCP endpoint {server.mcp_url}, log {server.log_path}")


def _note(text: str) -> None:
    print(f"{PROG}: {clean(text)}", file=sys.stderr, flush=True)


def _fail(error: CompanionError) -> int:
    _note(sentence(str(error), error.hint))
    return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
