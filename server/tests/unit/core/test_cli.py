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
