"""`vouchsim migrate` and `serve`: a database or a port that cannot be used is one clear line, checked in the right
order (the port before any database is touched); start-up logs in one format, without Alembic's steps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from vouchsim.server.cli import main
from vouchsim.server.storage.migrate import alembic_config

# The newest schema revision, as the banner and `migrate` name it.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_migrate_brings_a_new_sqlite_database_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'vouchsim.db'}"
    main(["migrate", "--database-url", url])
    assert capsys.readouterr().out.strip() == f"database is up to date: {url} (schema {HEAD}, new database)"
    assert (tmp_path / "new" / "vouchsim.db").is_file()
    main(["migrate", "--database-url", url])
    assert capsys.readouterr().out.strip() == f"database is up to date: {url} (schema {HEAD})"


def test_an_unreachable_database_is_named_without_its_password() -> None:
    url = f"postgresql+asyncpg://vouchsim:hunter2@127.0.0.1:{closed_port()}/vouchsim"
    with pytest.raises(SystemExit) as exited:
        main(["migrate", "--database-url", url])
    message = str(exited.value.code)
    assert message.startswith("vouchsim: cannot use the database postgresql+asyncpg://vouchsim:***@127.0.0.1:")
    assert "hunter2" not in message


def test_mcp_versions_come_from_the_option_over_the_environment() -> None:
    from vouchsim.server.cli import _settings, build_parser

    args = build_parser().parse_args(["serve", "--mcp-versions", "2026-07-28"])
    assert _settings(args).mcp_version_list == ("2026-07-28",)
    with pytest.raises(SystemExit) as exited:
        _settings(build_parser().parse_args(["serve", "--mcp-versions", "2024-11-05"]))
    assert "mcp_versions" in str(exited.value.code)


def test_mcp_versions_from_the_environment_are_ordered_newest_first() -> None:
    from vouchsim.server.settings import settings_from

    settings = settings_from({"VOUCHSIM_MCP_VERSIONS": "2025-06-18, 2025-11-25"})
    assert settings.mcp_version_list == ("2025-11-25", "2025-06-18")
    assert settings_from({}).mcp_version_list == ("2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://root:hunter2@db/vouchsim", "'mysql' is not a database this server runs on"),
        ("postgresql://u:hunter2@db/vouchsim", "'postgresql' is not a database this server runs on"),
        ("vouchsim.db", "'no scheme' is not a database this server runs on"),
    ],
)
def test_a_database_url_of_another_kind_is_one_line(url: str, shown: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--database-url", url, "--port", str(closed_port())])
    message = str(exited.value.code)
    assert message.startswith(f"vouchsim: invalid setting: database_url: {shown}; use sqlite+aiosqlite:///"), message
    assert "\n" not in message and "hunter2" not in message


def test_a_database_url_that_does_not_parse_is_one_line() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["migrate", "--database-url", "postgresql+asyncpg://u:hunter2@db:notaport/vouchsim"])
    message = str(exited.value.code)
    assert message.startswith("vouchsim: the database URL postgresql+asyncpg://… is not valid: "), message
    assert "hunter2" not in message


def test_a_port_in_use_stops_serve_before_the_banner_and_before_any_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "vouchsim.db"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--port", str(port), "--database-url", f"sqlite+aiosqlite:///{database}"])
    assert str(exited.value.code) == (
        f"vouchsim: port {port} on 127.0.0.1 is already in use (another server?); choose another with --port or "
        "VOUCHSIM_PORT"
    )
    assert capsys.readouterr().out == ""  # no banner
    assert not database.exists()  # nothing migrated


def test_serve_logs_its_start_in_one_format_without_alembic_steps(tmp_path: Path) -> None:
    """A real `vouchsim serve`: the banner once the port is bound (a client connecting then is queued, not
    refused), the schema named in it, and no Alembic INFO lines in either of the two formats seen before."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHSIM_")}
    command = [sys.executable, "-m", "vouchsim.server", "serve", "--port", str(port)]
    command += ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'vouchsim.db'}"]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "Vouchsim on" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # The banner is out, so the port is bound and listening: this request waits for the app instead of failing.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    text = log.read_text()
    assert f"database: sqlite+aiosqlite:///{tmp_path / 'vouchsim.db'} (schema {HEAD}, new database)" in text
    assert "alembic" not in text, text
    assert " - alembic." not in text and "INFO - " not in text, text  # Litestar's default format, unused
