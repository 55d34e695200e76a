"""The headless CLI end to end against the fake device API: output, state and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from companion.tests.cli_support import Result, RunCli, assert_one_line_error, run
from companion.tests.fakes import ISSUER, FakeDeviceServer, fingerprint_of, png_bytes, qr_image
from vouchsim.companion.cli import connection_table, parse_command_line
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.schemas import Connection
from vouchsim.companion.core.text import pairing_code

CODE = re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}")


@pytest.fixture
def cli(server: FakeDeviceServer, state_dir: Path) -> RunCli:
    """`cli("scan", "x")` runs a command with this test's state dir and the fake server."""

    def call(*args: str, answer: str | None = None, environ: dict[str, str] | None = None) -> Result:
        return run([*args, "--state", str(state_dir)], server.transport, answer=answer, environ=environ)

    return call


@pytest.fixture
def enrolled(cli: RunCli, server: FakeDeviceServer) -> FakeDeviceServer:
    assert cli("enrol", "--server", ISSUER, "--name", "Pixel of QA").code == 0
    return server


def write_qr(tmp_path: Path, text: str) -> str:
    path = tmp_path / "qr.png"
    path.write_bytes(png_bytes(qr_image(text)))
    return str(path)


# --- enrol ---------------------------------------------------------------------------------------------


def test_enrol_prints_device_id_and_fingerprint(cli: RunCli, server: FakeDeviceServer, state_dir: Path) -> None:
    result = cli("enrol", "--server", ISSUER, "--name", "Pixel of QA")
    assert result.code == 0, result.err
    device = server.devices["dev_1"]
    assert device.name == "Pixel of QA"
    assert "device_id:   dev_1" in result.out
    assert f"fingerprint: {fingerprint_of(device.raw_key)}" in result.out
    assert Keystore(state_dir).load_identity().device_id == "dev_1"


def test_enrol_defaults_the_name_to_the_host(cli: RunCli, server: FakeDeviceServer) -> None:
    assert cli("enrol", "--server", ISSUER).code == 0
    assert server.devices["dev_1"].name.startswith("Vouchsim companion on ")


def test_enrolling_again_with_the_same_server_shows_the_identity(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    sent = len(enrolled.requests)
    result = cli("enrol", "--server", ISSUER + "/")
    assert result.code == 0
    assert "Already enrolled" in result.out
    assert "device_id:   dev_1" in result.out
    assert len(enrolled.requests) == sent


def test_enrolling_with_another_server_needs_force(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    result = cli("enrol", "--server", "http://elsewhere:8741")
    assert_one_line_error(result, 1, r"already enrolled with http://127\.0\.0\.1:8741.*--force")


def test_force_enrols_a_new_key(cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path) -> None:
    result = cli("enrol", "--server", ISSUER, "--force")
    assert result.code == 0, result.err
    assert "device_id:   dev_2" in result.out
    assert enrolled.devices["dev_1"].raw_key != enrolled.devices["dev_2"].raw_key
    assert Keystore(state_dir).load_identity().device_id == "dev_2"


def test_enrol_reads_the_server_and_state_from_the_environment(server: FakeDeviceServer, tmp_path: Path) -> None:
    environ = {
        "VOUCHSIM_SERVER_URL": "http://env-server:9000",
        "VOUCHSIM_COMPANION_STATE": str(tmp_path / "env"),
    }
    assert run(["enrol"], server.transport, environ=environ).code == 0
    assert server.requests[-1].url.host == "env-server"
    assert Keystore(tmp_path / "env").load_identity().enrolment.server_url == "http://env-server:9000"


def test_enrol_with_a_bad_name_is_a_failure(cli: RunCli) -> None:
    assert_one_line_error(cli("enrol", "--name", "x" * 65), 1, "1 to 64 characters")


# --- scan ----------------------------------------------------------------------------------------------


def test_scan_approve_prints_the_context_and_ends_with_the_code(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    result = cli("scan", write_qr(tmp_path, enrolled.open_pairing()), "--approve")
    assert result.code == 0, result.err
    assert "client:   Acme Agent Client (vsc_1)" in result.out
    assert "redirect: 127.0.0.1" in result.out
    assert "scopes:   identity, delegation" in result.out
    assert "expires:  2026-11-25 15:05:00 UTC" in result.out
    assert CODE.fullmatch(result.last_line)
    assert enrolled.pairing("pair_1").status == "approved"
    assert enrolled.pairing("pair_1").codes == [result.last_line]


def test_scan_without_a_tty_approves_nothing(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    source = write_qr(tmp_path, enrolled.open_pairing())
    result = cli("scan", source)
    assert result.code == 0
    assert "Nothing approved" in result.out
    assert f"vouchsim companion scan {source} --approve --state " in result.out
    assert enrolled.pairing("pair_1").status == "claimed"
    # The advice works: scanning again with --approve approves the same pairing.
    assert CODE.fullmatch(cli("scan", source, "--approve").last_line)
    assert enrolled.pairing("pair_1").status == "approved"


@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_scan_asks_on_a_tty_and_approves_on_yes(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path, answer: str
) -> None:
    result = cli("scan", write_qr(tmp_path, enrolled.open_pairing()), answer=answer)
    assert result.code == 0
    assert "Approve this pairing? [y/N]" in result.out
    assert CODE.fullmatch(result.last_line)
    assert enrolled.pairing("pair_1").status == "approved"


@pytest.mark.parametrize("answer", ["\n", "n\n", "", "maybe\n"])
def test_scan_declines_by_default_on_a_tty(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path, answer: str
) -> None:
    result = cli("scan", write_qr(tmp_path, enrolled.open_pairing()), answer=answer)
    assert result.code == 0
    assert "Declined pairing pair_1" in result.out
    assert enrolled.pairing("pair_1").status == "declined"


def test_scan_json_is_one_object_with_the_pairing_and_its_outcome(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path
) -> None:
    approved = cli("scan", write_qr(tmp_path, enrolled.open_pairing()), "--approve", "--json")
    assert approved.code == 0, approved.err
    document = json.loads(approved.out)  # stdout is that one object, nothing else
    assert document["outcome"] == "approved"
    assert document["pairing"]["pairing_id"] == "pair_1"
    assert document["pairing"]["client_name"] == "Acme Agent Client"
    assert CODE.fullmatch(document["pairing_code"])
    assert document["code_expires_at"] and document["redirect"] is None

    claimed = json.loads(cli("scan", enrolled.open_pairing(), "--json").out)  # no terminal, no --approve
    assert (claimed["outcome"], claimed["pairing_code"]) == ("claimed", None)

    declined = cli("scan", enrolled.open_pairing(), "--json", answer="n\n")
    assert declined.err == "Approve this pairing? [y/N] "  # asked on stderr: stdout stays JSON
    assert json.loads(declined.out)["outcome"] == "declined"


def test_scan_from_a_url(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.images["/pair.png"] = png_bytes(qr_image(enrolled.open_pairing()))
    result = cli("scan", "http://images.test/pair.png", "--approve")
    assert result.code == 0, result.err
    assert CODE.fullmatch(result.last_line)


def test_scan_accepts_the_uri_itself(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    result = cli("scan", enrolled.open_pairing(), "--approve")
    assert result.code == 0, result.err
    assert CODE.fullmatch(result.last_line)


def test_scan_before_enrolment(cli: RunCli, server: FakeDeviceServer, tmp_path: Path) -> None:
    assert_one_line_error(cli("scan", write_qr(tmp_path, "x")), 1, r"not enrolled.*enrol --server")
    assert server.requests == []


def test_scan_of_something_that_is_not_an_image(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert_one_line_error(cli("scan", str(path)), 1, "not an image")


def test_scan_of_an_image_without_a_qr(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    path.write_bytes(png_bytes(qr_image("x").point(lambda _: 255)))
    assert_one_line_error(cli("scan", str(path)), 1, "No QR code was found")


def test_scan_of_a_missing_file(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    assert_one_line_error(cli("scan", str(tmp_path / "nope.png")), 1, "Cannot read .*nope.png")


def test_scan_of_a_foreign_qr(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    sent = len(enrolled.requests)
    assert_one_line_error(cli("scan", write_qr(tmp_path, "https://example.com")), 1, "not a Vouchsim pairing QR")
    assert len(enrolled.requests) == sent


def test_scan_of_another_servers_qr_claims_nothing(cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path) -> None:
    other = FakeDeviceServer(issuer="https://other.example").open_pairing()
    sent = len(enrolled.requests)
    result = cli("scan", write_qr(tmp_path, other), "--approve")
    assert_one_line_error(result, 1, r"belongs to https://other\.example.*enrolled with http://127\.0\.0\.1:8741")
    assert len(enrolled.requests) == sent


@pytest.mark.parametrize(
    ("status", "code", "pattern"),
    [
        (410, "pairing_expired", "expired.*fresh QR"),
        (409, "pairing_already_claimed", "pairing_already_claimed"),
        (404, "pairing_not_found", "pairing_not_found"),
    ],
)
def test_scan_reports_server_refusals(
    cli: RunCli, enrolled: FakeDeviceServer, tmp_path: Path, status: int, code: str, pattern: str
) -> None:
    enrolled.next_error = httpx.Response(status, json={"error": code, "error_description": f"Refused: {code}."})
    assert_one_line_error(cli("scan", write_qr(tmp_path, enrolled.open_pairing())), 1, pattern)


def test_scan_shows_hostile_server_text_safely(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.client_name = "Evil\x1b[2J\nClient"
    result = cli("scan", enrolled.open_pairing())
    assert "\x1b" not in result.out
    # The escape shows as `?`; the newline is whitespace, folded into one line as in the TUI (core.text.clean).
    assert "client:   Evil?[2J Client (vsc_1)" in result.out


# --- connections, unpair, whoami -----------------------------------------------------------------------


def test_connections_table(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_connection("dev_1", "Old Agent")
    enrolled.add_connection("dev_1", "New Agent")
    enrolled.connections[1]["revoked_at"] = "2026-11-26T08:00:00Z"
    result = cli("connections")
    assert result.code == 0
    header, first, second = result.out.splitlines()
    assert header.split() == ["ID", "CLIENT", "SCOPES", "CREATED", "LAST", "USED", "STATUS"]
    assert first.startswith("conn_2  New Agent")
    assert first.endswith("active")
    assert second.endswith("revoked 2026-11-26 08:00:00 UTC")
    assert "never" in first


def test_connections_json(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_connection("dev_1")
    result = cli("connections", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["connections"][0]["connection_id"] == "conn_1"
    assert data["connections"][0]["revoked_at"] is None
    assert data["connections"][0]["created_at"] == "2026-11-25T15:00:00Z"


def test_no_connections(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    assert cli("connections").out == "No connections.\n"
    assert json.loads(cli("connections", "--json").out) == {"connections": []}


def test_unpair(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    enrolled.add_connection("dev_1")
    result = cli("unpair", "conn_1")
    assert result.code == 0
    assert result.out == "Unpaired conn_1 (Acme Agent Client), revoked at 2026-11-25 15:00:00 UTC.\n"
    assert enrolled.connections[0]["revoked_at"] is not None


def test_unpair_of_an_unknown_connection(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    assert_one_line_error(cli("unpair", "conn_9"), 1, r"No such connection.*connections")


def test_whoami(cli: RunCli, enrolled: FakeDeviceServer) -> None:
    sent = len(enrolled.requests)
    result = cli("whoami")
    assert result.code == 0
    assert "device_id:   dev_1" in result.out
    assert "name:        Pixel of QA" in result.out
    assert "server:      http://127.0.0.1:8741" in result.out
    assert json.loads(cli("whoami", "--json").out)["device_id"] == "dev_1"
    assert len(enrolled.requests) == sent  # local: works while the server is down


def test_whoami_before_enrolment(cli: RunCli) -> None:
    assert_one_line_error(cli("whoami"), 1, "not enrolled")


def test_commands_use_the_enrolled_server_unless_told_otherwise(server: FakeDeviceServer, state_dir: Path) -> None:
    state = ["--state", str(state_dir)]
    assert run(["enrol", "--server", "http://phone-home:1", *state], server.transport).code == 0
    run(["connections", *state], server.transport)
    assert server.requests[-1].url.host == "phone-home"
    run(["connections", "--server", "http://proxy:2", *state], server.transport)
    assert server.requests[-1].url.host == "proxy"


# --- failures and usage --------------------------------------------------------------------------------


def refusing(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def test_server_down_is_one_line(cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path) -> None:
    result = run(["connections", "--state", str(state_dir)], httpx.MockTransport(refusing))
    assert_one_line_error(result, 1, r"Could not connect to the server at http://127\.0\.0\.1:8741.*running")


def test_an_unexpected_bug_is_still_one_line(cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    result = run(["connections", "--state", str(state_dir)], httpx.MockTransport(broken))
    assert_one_line_error(result, 1, r"internal error \(RuntimeError: boom\)")


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["fly"], "invalid choice"),
        (["scan"], "IMAGE_PATH_OR_URL"),
        (["unpair"], "CONNECTION_ID"),
        (["connections", "--bogus"], "unrecognized"),
        (["enrol", "--server", "localhost:8741"], "absolute http"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], pattern: str) -> None:
    assert_one_line_error(run(argv, None), 2, pattern)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", "--help"], None).code == 0
    assert "--approve" in capsys.readouterr().out


def test_python_dash_m_companion_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vouchsim.companion", "whoami", "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("vouchsim companion: ")
    assert "not enrolled" in proc.stderr


# --- formatting helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("BCDF-GHJK", "BCDF-GHJK"), ("bcdfghjk", "BCDF-GHJK"), ("BCDF GHJK", "BCDF-GHJK"), ("ODD", "ODD")],
)
def test_pairing_code_format(raw: str, shown: str) -> None:
    assert pairing_code(raw) == shown


def test_connection_table_aligns_columns() -> None:
    created = datetime(2026, 1, 1)
    connection = Connection(
        connection_id="c", client_id="x", client_name="A long client", scopes=[], created_at=created
    )
    rows = connection_table([connection])
    assert rows[0].index("CLIENT") == rows[1].index("A long client")


# --- the TUI's options ----------------------------------------------------------------------------------


def test_the_tui_takes_state_and_server_like_every_command(tmp_path: Path) -> None:
    environ = {"VOUCHSIM_COMPANION_STATE": "from-env", "VOUCHSIM_SERVER_URL": "http://env.example:1"}
    args, config = parse_command_line(["--state", str(tmp_path), "--server", "http://127.0.0.1:9/"], environ)
    assert args.command_fn is None  # no command: the TUI
    assert (config.state_dir, config.server_url) == (tmp_path, "http://127.0.0.1:9")
    _, config = parse_command_line([], environ)
    assert (config.state_dir, config.server_url) == (Path("from-env"), "http://env.example:1")
    _, config = parse_command_line(["--state", "before", "whoami"], {})  # before a command, too
    assert config.state_dir == Path("before")
    _, config = parse_command_line(["whoami", "--state", "after"], {})
    assert config.state_dir == Path("after")


def test_the_tui_takes_a_testbed_token_for_the_timeline_option_over_variable() -> None:
    _, config = parse_command_line([], {})
    assert config.testbed_token is None
    _, config = parse_command_line([], {"VOUCHSIM_TESTBED_TOKEN": "from-env"})
    assert config.testbed_token == "from-env"
    _, config = parse_command_line(["--testbed-token", "opt"], {"VOUCHSIM_TESTBED_TOKEN": "from-env"})
    assert config.testbed_token == "opt"
    _, config = parse_command_line([], {"VOUCHSIM_TESTBED_TOKEN": "  "})
    assert config.testbed_token is None


def test_the_tui_refuses_a_server_url_that_is_not_one() -> None:
    result = run(["--server", "ftp://x"], httpx.MockTransport(lambda request: httpx.Response(500)))
    assert result.code == 2
    assert result.err.startswith("vouchsim companion: server URL must be an absolute http(s) URL")


# --- a lost phone: forgetting this device, and a device the server revoked ----------------------------------


def test_forget_revokes_on_the_server_then_wipes_the_key(
    cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path
) -> None:
    enrolled.add_connection("dev_1")
    assert Keystore(state_dir).read_key() is not None
    result = cli("forget", "--cut-connections")
    assert result.code == 0, result.err
    fp = enrolled.devices["dev_1"].info(ISSUER)["fingerprint"]
    assert result.lines[0] == f"Forgot dev_1 (Pixel of QA, {fp}): revoked on the server at 2026-11-25 15:00:00 UTC."
    assert result.lines[1] == "Connections cut: 1."
    assert result.last_line == f"Deleted this device's key and enrolment from {state_dir}."
    assert enrolled.devices["dev_1"].revoked_at is not None
    assert enrolled.connections[0]["revoked_at"] is not None
    assert Keystore(state_dir).read_key() is None and Keystore(state_dir).read_enrolment() is None
    assert_one_line_error(cli("pending"), 1, r"not enrolled")


def test_forget_asks_on_a_terminal(cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path) -> None:
    kept = cli("forget", answer="n\n")
    assert kept.code == 1 and "Nothing was forgotten" in kept.err
    assert enrolled.devices["dev_1"].revoked_at is None and Keystore(state_dir).read_key() is not None


def test_a_revoked_device_is_told_so_and_can_still_be_forgotten(
    cli: RunCli, enrolled: FakeDeviceServer, state_dir: Path
) -> None:
    enrolled.revoke_device("dev_1")
    assert_one_line_error(cli("pending"), 1, r"revoked at .*vouchsim companion forget")
    forgotten = cli("forget", "--yes")
    assert forgotten.code == 0, forgotten.err
    assert "was already revoked on the server" in forgotten.out
    assert Keystore(state_dir).read_enrolment() is None
