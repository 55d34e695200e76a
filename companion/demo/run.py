"""`vouchsim companion demo`: start the server, enrol the demo device, run the TUI; stop the server whatever happens.

This module is light on purpose: it launches the server first and only then imports the TUI and the agent (Textual,
the MCP SDK), so the two start-ups overlap instead of adding up, and it prints what is happening, with the time, while
the person waits.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from vouchsim.companion.server_process import ServerProcess, ServerStartError, exit_on_termination


def run_demo(*, auto: bool, headless: bool = False, keep: bool = False, protocol: str = "auto") -> int:
    """The exit status: 0 once the story reached its end, 1 with the reason otherwise."""
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"  {time.monotonic() - started:4.1f} s  {text}", flush=True)

    exit_on_termination()
    state = Path(tempfile.mkdtemp(prefix="vouchsim-demo-"))
    testbed_token = secrets.token_urlsafe(32)  # the Timeline reads the server's testbed journal with it
    server = ServerProcess(state, env={"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": testbed_token})
    status = 1
    try:
        print(f"Vouchsim demo: starting the server on {server.base_url} (state in {state})…", flush=True)
        server.launch()
        progress("loading the companion and the agent (Textual, the MCP Python SDK) meanwhile…")
        from vouchsim.companion.core.config import CompanionConfig
        from vouchsim.companion.core.testbed import journal_line
        from vouchsim.companion.demo.app import AUTO_PACE, DEMO_PIN, DemoApp, enrol_demo_device

        progress("waiting for the server to answer /healthz:")
        try:
            server.wait_until_ready(on_progress=lambda line: progress(f"server │ {line}"))
        except ServerStartError as exc:
            print(f"vouchsim demo: {exc}", file=sys.stderr)
            return 1
        progress(f"server ready; enrolling the demo device (its PIN is {DEMO_PIN})…")
        asyncio.run(enrol_demo_device(state / "companion", server.base_url))
        progress("opening the companion, with the agent on the right")
        config = CompanionConfig(state_dir=state / "companion", server_url=server.base_url, testbed_token=testbed_token)
        pace = 0.0 if headless else AUTO_PACE  # nobody sees a headless run's screens
        app = DemoApp(config, camera_dir=state / "camera", auto=auto, protocol=protocol, pace=pace)
        app.run(headless=headless)
        status = app.return_code if app.return_code is not None else 1
        for line in app.transcript:  # the agent's side, kept on the terminal after the TUI is gone
            print(line)
        if app.timeline:  # and the server's side: the Timeline, as the journal recorded it
            print("Timeline (the server's testbed journal):")
            for entry in app.timeline:
                print(journal_line(entry))
        if app.failure is not None or status != 0:
            print(f"vouchsim demo: failed: {app.failure or f'exit status {status}'}", file=sys.stderr)
            print(f"  server log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
            keep = True
        else:
            print(f"Vouchsim demo: done in {time.monotonic() - started:.1f} s.", flush=True)
        return status
    finally:
        server.stop()
        print(f"Vouchsim demo: the server on {server.base_url} is stopped.", flush=True)
        if keep:
            print(f"Vouchsim demo: state kept in {state}", flush=True)
        else:
            shutil.rmtree(state, ignore_errors=True)
