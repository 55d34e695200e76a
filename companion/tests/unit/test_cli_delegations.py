"""The delegation commands end to end against the fake device API: pending, approve, deny, history,
revoke, and watch in each mode, with reconnection, --once and --timeout."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from companion.tests.cli_support import Result, RunCli, Sleeps, assert_one_line_error, run
from companion.tests.fakes import (
    ISSUER,
    NOW,
    FakeDeviceServer,
    enrolment_for,
    expected_statement,
    fingerprint_of,
    iso,
    sample_delegation,
)
from vouchsim.companion.cli import pending_table
from vouchsim.companion.core.keystore import Keystore, generate_key
from vouchsim.companion.core.text import decision_line, expires_in

LINE_1 = "approved dlg_1 aud_test_payments payments.identity,payments.prepare"


@pytest.fixture
def server() -> FakeDeviceServer:
    return FakeDeviceServer(clock=lambda: NOW)


@pytest.fixture
def cli(server: FakeDeviceServer, state_dir: Path) -> RunCli:
    """`cli("watch", "--approve-all")`: this test's state dir, the fake server, and its frozen clock."""

    def call(*args: str, **options: Any) -> Result:
        return run([*args, "--state", str(state_dir)], server.transport, clock=lambda: NOW, **options)

    return call


@pytest.fixture
def enrolled(cli: RunCli, server: FakeDeviceServer) -> FakeDeviceServer:
    assert cli("enrol", "--server", ISSUER, "--name", "Pixel of QA").code == 0
    return server


def decision_requests(server: FakeDeviceServer) -> list[httpx.Request]:
    return [r for r in server.requests if r.url.path.endswith("/decision")]


def write_rules(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- pending -------------------------------------------------------------------------------------------


def test_pending_table(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.add_delegation(
        audience_id="aud_demo",
        scopes=["demo.read"],
        purpose="A purpose far longer than the column that shows it, so it is cut short.",
        binding_message="tiny-owl-7",
        expires_at=iso(NOW + 45),
    )
    enrolled.add_delegation(status="approved")
    result = cli("pending")
    assert result.code == 0, result.err
    header, first, second = result.lines
    assert re.split(r"\s{2,}", header) == [
        "ID",
        "CLIENT",
        "AUDIENCE",
        "SCOPES",
        "PURPOSE",
        "BINDING MESSAGE",
        "EXPIRES IN",
    ]
    assert re.split(r"\s{2,}", first) == [
        "dlg_2",
        "Acme Agent Client",
        "aud_demo",
        "demo.read",
        "A purpose far longer than the column th…",
        "tiny-owl-7",
        "45s",
    ]
    assert re.split(r"\s{2,}", second) == [
        "dlg_1",
        "Acme Agent Client",
        "aud_test_payments",
        "payments.identity,payments.prepare",
        "Identify the user before preparing a pa…",
        "amber-falcon-42",
        "5m 00s",
    ]


def test_pending_json_keeps_the_wire_values(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    record = enrolled.add_delegation(expires_at="2026-11-18T11:11:40.250+00:00")
    result = cli("pending", "--json")
    assert result.code == 0
    (shown,) = json.loads(result.out)["delegations"]
    assert shown == enrolled.public(record) | {"created_at": iso(NOW)}
    assert shown["expires_at"] == "2026-11-18T11:11:40.250+00:00"


def test_no_pending_delegations(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    assert cli("pending").out == "No pending delegations.\n"
    assert json.loads(cli("pending", "--json").out) == {"delegations": []}


def test_pending_shows_hostile_server_text_safely(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation(client_name="Evil\x1b[2J", purpose="Line\nbreak\x07", binding_message="a\u202eb")
    result = cli("pending")
    assert "\x1b" not in result.out and "\x07" not in result.out and "\u202e" not in result.out
    assert "Evil?[2J" in result.out and "Line break?" in result.out and "a?b" in result.out


# --- approve and deny ----------------------------------------------------------------------------------


def test_approve_shows_the_delegation_and_the_statement_it_signs(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    record = enrolled.add_delegation()
    result = cli("approve", "dlg_1")
    assert result.code == 0, result.err
    assert "Delegation dlg_1 (pending)" in result.out
    assert "  client:   Acme Agent Client (vsc_1)" in result.lines
    assert "  audience: Test payments (aud_test_payments)" in result.lines
    assert "  scopes:   payments.identity, payments.prepare" in result.lines
    assert "  purpose:  Identify the user before preparing a payment approval." in result.lines
    assert "  binding:  amber-falcon-42" in result.lines
    assert "  expires:  2026-11-18 11:11:40 UTC (5m 00s)" in result.lines
    fingerprint = fingerprint_of(enrolled.devices["dev_1"].raw_key)
    signing = result.lines.index(f"Signing with device dev_1 ({fingerprint}):")
    shown = "\n".join(line.removeprefix("  ") for line in result.lines[signing + 1 : signing + 3])
    assert shown.encode() == record["evidence"]["statement"]  # exactly what the server verified
    assert shown.encode() == expected_statement(record, "approve", record["evidence"]["nonce"])
    assert result.last_line == LINE_1
    assert record["status"] == "approved"


def test_deny(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    record = enrolled.add_delegation()
    result = cli("deny", "dlg_1")
    assert result.code == 0, result.err
    assert '"decision":"deny"' in result.out
    assert result.last_line == "denied dlg_1 aud_test_payments payments.identity,payments.prepare"
    assert record["status"] == "denied"


@pytest.mark.parametrize("command", ["approve", "deny"])
def test_deciding_what_is_no_longer_pending_sends_nothing(
    cli: RunCli, enrolled: FakeDeviceServer, command: str
) -> None:
    enrolled.add_delegation(status="approved")
    result = cli(command, "dlg_1")
    assert_one_line_error(result, 1, "Delegation dlg_1 is no longer pending: it is approved")
    assert "Delegation dlg_1 (approved)" in result.out
    assert decision_requests(enrolled) == []


def test_deciding_an_unknown_delegation(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation(user_id="usr_9")
    assert_one_line_error(cli("approve", "dlg_1"), 1, r"no delegation dlg_1.*vouchsim companion pending")
    assert decision_requests(enrolled) == []


def test_losing_a_race_is_one_line(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.before_decision = lambda record: record.update(status="denied")  # another device was faster
    assert_one_line_error(cli("approve", "dlg_1"), 1, "no longer pending: it is denied")


def test_a_refused_signature_is_reported_as_a_bug(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.before_decision = lambda record: record.update(binding_message="other-words-9")
    assert_one_line_error(cli("approve", "dlg_1"), 1, "signature does not verify.*report it as a bug")
    assert enrolled.delegation("dlg_1")["status"] == "pending"


# --- history and revoke --------------------------------------------------------------------------------


def test_history_table_and_json(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.add_delegation(audience_id="aud_demo", scopes=[])
    enrolled.add_delegation(expires_at=iso(NOW - 1))  # read after its expiry: expired
    enrolled.add_delegation()  # still pending: not history
    assert cli("approve", "dlg_1").code == 0
    assert cli("deny", "dlg_2").code == 0
    result = cli("history")
    assert result.code == 0, result.err
    header, *rows = result.lines
    assert re.split(r"\s{2,}", header) == ["ID", "CLIENT", "AUDIENCE", "SCOPES", "STATUS", "DECIDED", "BY"]
    assert [re.split(r"\s{2,}", row) for row in rows] == [
        ["dlg_3", "Acme Agent Client", "aud_test_payments", "payments.identity,payments.prepare", "expired", "-", "-"],
        ["dlg_2", "Acme Agent Client", "aud_demo", "-", "denied", "2026-11-18 11:06:40 UTC", "dev_1"],
        [
            "dlg_1",
            "Acme Agent Client",
            "aud_test_payments",
            "payments.identity,payments.prepare",
            "approved",
            "2026-11-18 11:06:40 UTC",
            "dev_1",
        ],
    ]
    listing = json.loads(cli("history", "--json").out)["delegations"]
    assert [(d["delegation_id"], d["status"]) for d in listing] == [
        ("dlg_3", "expired"),
        ("dlg_2", "denied"),
        ("dlg_1", "approved"),
    ]


def test_empty_history(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    assert cli("history").out == "No decided delegations yet.\n"


def test_revoke(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    assert cli("approve", "dlg_1").code == 0
    result = cli("revoke", "dlg_1")
    assert (result.code, result.out) == (0, "revoked dlg_1 aud_test_payments payments.identity,payments.prepare\n")
    assert enrolled.delegation("dlg_1")["status"] == "revoked"
    assert cli("revoke", "dlg_1").code == 0  # idempotent


def test_revoking_a_pending_or_unknown_delegation(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    assert_one_line_error(cli("revoke", "dlg_1"), 1, "still pending: deny it instead")
    assert_one_line_error(cli("revoke", "dlg_7"), 1, "No such delegation.*vouchsim companion pending")


# --- watch: the modes ----------------------------------------------------------------------------------


def test_watch_approve_all_once(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    record = enrolled.add_delegation()
    enrolled.add_delegation()
    result = cli("watch", "--approve-all", "--once")
    assert result.code == 0, result.err
    assert result.out == f"{LINE_1} (approve-all)\n"
    assert result.notes == ["vouchsim companion: Watching delegations at http://127.0.0.1:8741."]
    assert record["status"] == "approved"
    assert record["evidence"]["statement"] == expected_statement(record, "approve", record["evidence"]["nonce"])
    assert enrolled.delegation("dlg_2")["status"] == "pending"  # --once: the first decision only
    assert enrolled.subscribers == []  # the stream was closed on the way out


def test_watch_deny_all_once(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    result = cli("watch", "--deny-all", "--once")
    assert result.out == "denied dlg_1 aud_test_payments payments.identity,payments.prepare (deny-all)\n"
    assert enrolled.delegation("dlg_1")["status"] == "denied"


def test_watch_approve_all_decides_everything_pending(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    for _ in range(3):
        enrolled.add_delegation()
    enrolled.stream_connects = ["end"]
    result = cli("watch", "--approve-all", sleep=Sleeps(stop_after=1))  # Ctrl-C once the stream ends
    assert result.code == 130
    assert [line.split()[:2] for line in result.lines] == [["approved", f"dlg_{n}"] for n in (1, 2, 3)]
    assert {d["status"] for d in enrolled.delegations} == {"approved"}


RULES = """
default = "leave"

[[rule]]
audience = "aud_evil*"
decision = "deny"

[[rule]]
name = "payments"
audience = "aud_test_payments"
scopes = ["payments.*"]
decision = "approve"
"""


def test_watch_by_rules(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    enrolled.add_delegation(audience_id="aud_evil_corp")
    enrolled.add_delegation()
    enrolled.add_delegation(audience_id="aud_other")
    enrolled.add_delegation(scopes=["payments.identity", "mail.send"])
    enrolled.stream_connects = ["end"]
    result = cli("watch", "--rules", write_rules(tmp_path, RULES))
    assert result.code == 130
    assert result.lines == [
        "denied dlg_1 aud_evil_corp payments.identity,payments.prepare (rule 1)",
        "approved dlg_2 aud_test_payments payments.identity,payments.prepare (rule 2: payments)",
        "left dlg_3 aud_other payments.identity,payments.prepare (no rule matched, default leave; still pending)",
        "left dlg_4 aud_test_payments payments.identity,mail.send (no rule matched, default leave; still pending)",
    ]
    assert [d["status"] for d in reversed(enrolled.delegations)] == ["denied", "approved", "pending", "pending"]


def test_watch_once_waits_for_a_decision(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    enrolled.add_delegation(audience_id="aud_other")
    enrolled.add_delegation()
    result = cli("watch", "--rules", write_rules(tmp_path, RULES), "--once")
    assert result.code == 0
    assert [line.split()[0] for line in result.lines] == ["left", "approved"]


def test_watch_asks_on_a_terminal_when_the_rules_say_ask(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    enrolled.add_delegation(audience_id="aud_other")
    enrolled.add_delegation(audience_id="aud_other")
    enrolled.stream_connects = ["end"]
    rules = write_rules(tmp_path, '[[rule]]\naudience = "aud_evil"\ndecision = "deny"\n')  # default ask
    result = cli("watch", "--rules", rules, answer="yes\n\n")
    assert result.out.count("Approve dlg_") == 2
    assert "  binding:  amber-falcon-42" in result.lines
    assert "approved dlg_1 aud_other payments.identity,payments.prepare (asked)" in result.out
    assert "denied dlg_2 aud_other payments.identity,payments.prepare (asked)" in result.out  # Enter: no
    assert [d["status"] for d in reversed(enrolled.delegations)] == ["approved", "denied"]


def test_watch_without_a_terminal_leaves_what_it_would_ask(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    enrolled.add_delegation(audience_id="aud_other")
    enrolled.stream_connects = ["end"]
    rules = write_rules(tmp_path, '[[rule]]\naudience = "aud_evil"\ndecision = "deny"\n')
    result = cli("watch", "--rules", rules)
    assert result.lines == [
        "left dlg_1 aud_other payments.identity,payments.prepare "
        "(no rule matched, default ask; no terminal to ask on; still pending)"
    ]
    assert decision_requests(enrolled) == []


def test_watch_with_a_broken_rules_file_fails_before_connecting(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    sent = len(enrolled.requests)
    result = cli("watch", "--rules", write_rules(tmp_path, '[[rule]]\ndecision = "approve"\n'))
    assert_one_line_error(result, 1, r"rules\.toml, rule 1 would match every delegation.*companion-rules\.md")
    assert_one_line_error(cli("watch", "--rules", str(tmp_path / "nope.toml")), 1, "Cannot read the rules file")
    assert len(enrolled.requests) == sent


# --- watch: the connection -----------------------------------------------------------------------------


def test_watch_reconnects_with_backoff_after_the_server_goes_away(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.stream_connects = [
        httpx.ConnectError("[Errno 111] Connection refused"),  # the server is down
        "drop",  # it came back, then the connection broke
        httpx.Response(502, html="<h1>Bad gateway</h1>"),  # a proxy while it restarts
    ]
    sleeps = Sleeps()
    result = cli("watch", "--approve-all", "--once", sleep=sleeps)
    assert result.code == 0, result.err
    assert result.out == f"{LINE_1} (approve-all)\n"
    assert sleeps.delays == [0.5, 0.5, 1.0]  # doubling, and back to the start once a stream opened
    notes = [note.removeprefix("vouchsim companion: ") for note in result.notes]
    assert notes == [
        "Could not connect to the server at http://127.0.0.1:8741; reconnecting in 0.5 s.",
        "Watching delegations at http://127.0.0.1:8741.",
        "The connection to http://127.0.0.1:8741 failed (ReadError: Connection reset by peer); reconnecting in 0.5 s.",
        "The server answered HTTP 502 without a device API error; reconnecting in 1 s.",
        "Reconnected; watching delegations at http://127.0.0.1:8741.",
    ]
    assert "Traceback" not in result.err
    assert enrolled.streams_opened == 4


def test_watch_handles_a_delegation_once_across_reconnections(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    enrolled.add_delegation(audience_id="aud_other")  # left pending by the rules
    enrolled.stream_connects = ["end", "end", "end"]
    sleeps = Sleeps(stop_after=3)
    result = cli("watch", "--rules", write_rules(tmp_path, RULES), sleep=sleeps)
    assert enrolled.streams_opened == 3  # replayed three times
    assert [line.split()[:2] for line in result.lines] == [["left", "dlg_1"]]
    assert sleeps.delays == [0.5, 0.5, 0.5]
    assert result.notes[1].endswith("The server closed the delegation stream; reconnecting in 0.5 s.")


def test_watch_retries_a_decision_the_server_never_got(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    failures = [httpx.ReadError("Connection reset by peer")]

    def flaky(record: dict[str, Any]) -> None:
        if failures:
            raise failures.pop()

    enrolled.before_decision = flaky
    result = cli("watch", "--approve-all", "--once", sleep=Sleeps())
    assert result.code == 0, result.err
    assert result.out == f"{LINE_1} (approve-all)\n"
    assert len(decision_requests(enrolled)) == 2
    assert enrolled.streams_opened == 2


def test_watch_reports_a_delegation_decided_elsewhere_and_goes_on(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.add_delegation()
    enrolled.before_decision = lambda record: (
        record.update(status="approved") if record["delegation_id"] == "dlg_1" else None
    )
    result = cli("watch", "--deny-all", "--once")
    assert result.code == 0
    assert result.lines == [
        "skipped dlg_1 aud_test_payments payments.identity,payments.prepare (no longer pending: approved)",
        "denied dlg_2 aud_test_payments payments.identity,payments.prepare (deny-all)",
    ]


def test_watch_keeps_trying_while_the_server_is_down(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.stream_connects = [httpx.ConnectError("[Errno 111] Connection refused")] * 9
    sleeps = Sleeps(stop_after=8)
    result = cli("watch", "--approve-all", sleep=sleeps)
    assert result.code == 130  # Ctrl-C: quietly
    assert sleeps.delays == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert len(result.notes) == 8
    assert all("Could not connect to the server at http://127.0.0.1:8741; reconnecting in" in n for n in result.notes)
    assert "Traceback" not in result.err and "interrupted" not in result.err
    assert result.out == ""


@pytest.mark.parametrize(
    ("plan", "pattern"),
    [
        (httpx.Response(401, json={"error": "invalid_signature", "error_description": "Bad."}), "Bad.*clock"),
        (httpx.Response(404, json={"error": "not_found", "error_description": "No such endpoint."}), "No such"),
    ],
)
def test_watch_stops_on_a_refusal_that_retrying_cannot_fix(
    cli: RunCli, enrolled: FakeDeviceServer, plan: httpx.Response, pattern: str
) -> None:
    enrolled.stream_connects = [plan]
    sleeps = Sleeps()
    assert_one_line_error(cli("watch", "--approve-all", sleep=sleeps), 1, pattern)
    assert sleeps.delays == []


def test_watch_retries_a_server_error_with_an_error_body(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.stream_connects = [httpx.Response(503, json={"error": "unavailable"})]
    result = cli("watch", "--approve-all", "--once", sleep=Sleeps())
    assert result.code == 0
    assert "The server answered 503 unavailable; reconnecting in 0.5 s." in result.err


def test_watch_stops_when_the_server_refuses_its_signature(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_delegation()
    enrolled.before_decision = lambda record: record.update(purpose="Something else.")
    result = cli("watch", "--approve-all")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert re.search("signature does not verify.*report it as a bug", result.notes[-1])
    assert result.out == ""


def test_watch_timeout_exits_0(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    result = cli("watch", "--approve-all", "--timeout", "0.05")  # the stream stays open, with nothing
    assert result.code == 0
    assert result.notes[-1] == "vouchsim companion: Stopped after 0.05 s (0 decisions)."
    assert enrolled.subscribers == []


class BlockingTty(io.TextIOWrapper):
    """A terminal nobody types on: readline blocks until the test closes the other end."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def silent_tty() -> Iterator[BlockingTty]:
    read_end, write_end = os.pipe()
    tty = BlockingTty(io.BufferedReader(io.FileIO(read_end, "r")))
    try:
        yield tty
    finally:
        os.close(write_end)  # the watcher's reader thread sees end of file and finishes
        for thread in threading.enumerate():
            if thread.name == "companion-stdin":
                thread.join(5)
        tty.close()


def test_watch_timeout_is_not_held_up_by_an_open_question(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path, silent_tty: BlockingTty
) -> None:
    enrolled.add_delegation(audience_id="aud_other")
    rules = write_rules(tmp_path, '[[rule]]\naudience = "aud_evil"\ndecision = "deny"\n')
    done = threading.Event()
    outcome: list[Result] = []

    def watch() -> None:
        outcome.append(cli("watch", "--rules", rules, "--timeout", "0.1", stdin=silent_tty))
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(10), "watch --timeout waited for an answer nobody typed"
    (result,) = outcome
    assert result.code == 0
    assert "Approve dlg_1? [y/N]" in result.out
    assert enrolled.delegation("dlg_1")["status"] == "pending"


def test_sigint_stops_a_real_watcher_quietly_with_130(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was just free: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = generate_key()
    Keystore(tmp_path).save(key, enrolment_for(key, issuer=f"http://127.0.0.1:{port}"))
    command = [sys.executable, "-m", "vouchsim.companion", "watch", "--approve-all", "--state", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        first = ""
        while "reconnecting" not in first and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
            first = proc.stderr.readline() if ready else first
        assert "Could not connect" in first and "reconnecting in 0.5 s" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out == ""
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "interrupted" not in err


def test_watch_before_enrolment(cli: RunCli, server: FakeDeviceServer) -> None:
    assert_one_line_error(cli("watch", "--approve-all"), 1, "not enrolled")
    assert server.requests == []


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["watch"], "one of the arguments --approve-all --deny-all --rules is required"),
        (["watch", "--approve-all", "--deny-all"], "not allowed with"),
        (["watch", "--approve-all", "--timeout", "0"], "positive number of seconds"),
        (["watch", "--approve-all", "--timeout", "-1"], "positive number of seconds"),
        (["watch", "--approve-all", "--timeout", "soon"], "positive number of seconds"),
        (["watch", "--approve-all", "--timeout", "inf"], "positive number of seconds"),
        (["watch", "--rules"], "expected one argument"),
        (["approve"], "DELEGATION_ID"),
        (["revoke"], "DELEGATION_ID"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], pattern: str) -> None:
    assert_one_line_error(run(argv, None), 2, pattern)


# --- formatting helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "expired"), (0, "expired"), (1, "1s"), (59, "59s"), (60, "1m 00s"), (305, "5m 05s"), (3725, "1h 02m")],
)
def test_expires_in(seconds: int, shown: str) -> None:
    now = sample_delegation().expires
    assert expires_in(now.fromtimestamp(now.timestamp() + seconds, now.tzinfo), now) == shown


def test_decision_line() -> None:
    delegation = sample_delegation(scopes=[])
    assert decision_line("approved", delegation, "rule 2") == "approved dlg_1 aud_test_payments - (rule 2)"
    assert (
        decision_line("left", sample_delegation(audience_id="a\nb"))
        == "left dlg_1 a?b payments.identity,payments.prepare"
    )


def test_pending_table_aligns_columns() -> None:
    now = sample_delegation().created_at
    rows = pending_table([sample_delegation(client_name="A long client name")], now)
    assert rows[0].index("CLIENT") == rows[1].index("A long client name")
    assert rows[1].endswith("5m 00s")
