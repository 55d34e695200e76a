"""`vouchsim migrate` (and `serve`, which migrates first): a database that cannot be used is one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vouchsim.server.cli import main


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_migrate_brings_a_new_sqlite_database_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["migrate", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'new' / 'vouchsim.db'}"])
    assert capsys.readouterr().out.strip().endswith("database is up to date")
    assert (tmp_path / "new" / "vouchsim.db").is_file()


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
