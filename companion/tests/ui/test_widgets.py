"""The TUI's small pieces: formatting, the block-font pairing code, path completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from companion.tests.fakes import FakeDeviceServer
from vouchsim.companion.app import supersedes
from vouchsim.companion.core.schemas import Delegation
from vouchsim.companion.core.text import ago, clean, countdown, fit, instant, pairing_code, short_instant
from vouchsim.companion.widgets.pairing_code import GLYPH_HEIGHT, GLYPHS, banner
from vouchsim.companion.widgets.path_suggester import PathSuggester

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def test_untrusted_text_loses_control_characters_and_line_breaks() -> None:
    assert clean("Acme\x1b[2J\nAgent\tClient\u202e") == "Acme?[2J Agent Client?"
    assert clean("[b]Bank[/b]") == "[b]Bank[/b]"  # markup is shown as text by the widgets, not removed


def test_durations_and_instants() -> None:
    assert [countdown(s) for s in (300, 299.9, 61, 9, 0, -5, 3723)] == [
        "5:00",
        "4:59",
        "1:01",
        "0:09",
        "0:00",
        "0:00",
        "1:02:03",
    ]
    assert instant(datetime(2026, 11, 25, 16, 0, tzinfo=UTC) + timedelta(hours=0)) == "2026-11-25 16:00 UTC"
    assert short_instant(None) == "-"
    assert [ago(NOW - timedelta(seconds=s), NOW) for s in (5, 120, 7200, 86400, 3 * 86400, -30)] == [
        "just now",
        "2 min ago",
        "2 h ago",
        "1 day ago",
        "3 days ago",
        "just now",
    ]
    assert ago(None, NOW) == "never"
    assert fit("abcdef", 4) == "abc…"
    assert fit("abcd", 4) == "abcd"


@pytest.mark.parametrize(("sent", "shown"), [("BCDFGHJK", "BCDF-GHJK"), ("bcdf ghjk", "BCDF-GHJK"), ("AB", "AB")])
def test_pairing_codes_are_shown_as_xxxx_xxxx(sent: str, shown: str) -> None:
    assert pairing_code(sent) == shown


def test_the_block_font_covers_the_code_alphabet() -> None:
    assert set(GLYPHS) == set("BCDFGHJKLMNPQRSTVWXZ-")
    assert all(len(glyph) == GLYPH_HEIGHT and len(set(map(len, glyph))) == 1 for glyph in GLYPHS.values())
    big = banner("bcdf-ghjk")
    assert big is not None
    rows = big.split("\n")
    assert len(rows) == GLYPH_HEIGHT
    assert len(set(map(len, rows))) == 1  # every row as wide: centring keeps the letters aligned
    assert banner("BCDF-GHJA") is None  # a letter outside the alphabet: shown as plain text instead


async def test_path_completion_suggests_folders_and_pictures(tmp_path: Path) -> None:
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "qr.png").write_bytes(b"")
    (tmp_path / "shopping.txt").write_text("")
    (tmp_path / ".secret.png").write_bytes(b"")
    files = PathSuggester()
    folders = PathSuggester(folders_only=True)
    assert await files.get_suggestion(f"{tmp_path}/sh") == f"{tmp_path}/shots/"
    assert await files.get_suggestion(f"{tmp_path}/shots/") == f"{tmp_path}/shots/qr.png"
    assert await files.get_suggestion(f"{tmp_path}/shots/q") == f"{tmp_path}/shots/qr.png"
    assert await files.get_suggestion(f"{tmp_path}/shots") == f"{tmp_path}/shots/"
    assert await files.get_suggestion(f"{tmp_path}/shop") is None  # not a picture
    assert await files.get_suggestion(f"{tmp_path}/.s") == f"{tmp_path}/.secret.png"
    assert await files.get_suggestion(f"{tmp_path}/nowhere/x") is None
    assert await folders.get_suggestion(f"{tmp_path}/shots/") is None
    home = PathSuggester(home=tmp_path)
    assert await home.get_suggestion("~/sho") == "~/shots/"


def test_an_older_picture_of_a_delegation_never_undoes_a_newer_one() -> None:
    record = FakeDeviceServer.public(FakeDeviceServer().add_delegation())
    pending = msgspec.convert(record, Delegation)
    approved = msgspec.structs.replace(pending, status="approved")
    revoked = msgspec.structs.replace(pending, status="revoked")
    assert supersedes(pending, None)
    assert supersedes(approved, pending)
    assert supersedes(revoked, approved)
    assert supersedes(approved, approved)
    assert not supersedes(pending, approved)
    assert not supersedes(approved, revoked)
    assert not supersedes(pending, msgspec.structs.replace(pending, status="expired"))
