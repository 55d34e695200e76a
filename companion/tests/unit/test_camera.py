"""The TUI's camera: sources from the scan form, reading a QR from a file or URL, the watched folder."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from companion.tests.fakes import FakeDeviceServer, png_bytes, qr_image
from vouchsim.companion.camera import FolderWatch, ImageFile, ImageUrl, read_qr_text, source_from_text
from vouchsim.companion.core.errors import ImageSourceError, NoQrCodeFoundError

pytestmark = pytest.mark.anyio

URI = "vouchsim://pair?v=1&iss=http%3A%2F%2F127.0.0.1%3A8741&secret=" + "A" * 43


def test_sources_from_the_form(tmp_path: Path) -> None:
    assert source_from_text("file", f"  {tmp_path}/qr.png ") == ImageFile(tmp_path / "qr.png")
    assert source_from_text("file", "~/qr.png") == ImageFile(Path("~/qr.png").expanduser())
    assert source_from_text("url", "https://x.test/qr.png") == ImageUrl("https://x.test/qr.png")
    with pytest.raises(ImageSourceError, match="http:// or https://"):
        source_from_text("url", "file:///etc/passwd")
    with pytest.raises(ImageSourceError, match="first"):
        source_from_text("file", "   ")


async def test_reading_a_file_and_a_url(tmp_path: Path, server: FakeDeviceServer) -> None:
    path = tmp_path / "qr.png"
    path.write_bytes(png_bytes(qr_image(URI)))
    server.images["/qr.png"] = path.read_bytes()
    async with httpx.AsyncClient(transport=server.transport) as http:
        assert await read_qr_text(ImageFile(path), http) == URI
        assert await read_qr_text(ImageUrl("http://images.test/qr.png"), http) == URI
        with pytest.raises(ImageSourceError, match="HTTP 404"):
            await read_qr_text(ImageUrl("http://images.test/missing.png"), http)
        blank = tmp_path / "blank.png"
        blank.write_bytes(png_bytes(qr_image(URI).point(lambda _: 255)))
        with pytest.raises(NoQrCodeFoundError):
            await read_qr_text(ImageFile(blank), http)


def touch(path: Path, data: bytes = b"x", mtime_ns: int = 1_000_000_000_000_000_000) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_watched_folder_reports_new_and_changed_pictures_only(tmp_path: Path) -> None:
    touch(tmp_path / "before.png")
    watch = FolderWatch(tmp_path)
    assert watch.poll() == []  # taking stock: what was there is not a new picture
    assert watch.poll() == []
    touch(tmp_path / "b.PNG", mtime_ns=2_000_000_000_000_000_000)
    touch(tmp_path / "a.jpg", mtime_ns=3_000_000_000_000_000_000)
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.png")
    (tmp_path / "folder.png").mkdir()
    assert watch.poll() == [tmp_path / "b.PNG", tmp_path / "a.jpg"]  # oldest first
    assert watch.poll() == []
    touch(tmp_path / "before.png", b"saved again", mtime_ns=4_000_000_000_000_000_000)
    assert watch.poll() == [tmp_path / "before.png"]
    (tmp_path / "a.jpg").unlink()
    assert watch.poll() == []


def test_a_folder_that_cannot_be_listed_is_an_image_source_error(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="does not exist"):
        FolderWatch(tmp_path / "nowhere").poll()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageSourceError, match="not a folder"):
        FolderWatch(tmp_path / "file").poll()
