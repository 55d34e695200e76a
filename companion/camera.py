"""The TUI's camera: where the picture of a pairing QR comes from, and reading its text.

A terminal has no camera, so the person chooses one: an image file, an image URL, or a watched folder
that acts as the camera (every new image dropped there is scanned, e.g. a screenshot saved from a phone).
Decoding is the core's (`companion.core.qr`); this module only fetches bytes and keeps it off the event
loop. No Textual here: the screens call it from workers, and tests call it directly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from vouchsim.companion.core.errors import ImageSourceError
from vouchsim.companion.core.qr import decode_qr_bytes, decode_qr_file, fetch_image, is_url

IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ImageFile:
    path: Path

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


@dataclass(frozen=True)
class ImageUrl:
    url: str

    @property
    def label(self) -> str:
        return self.url


ScanSource = ImageFile | ImageUrl


def source_from_text(kind: str, text: str) -> ScanSource:
    """What the scan form holds, as a source; ImageSourceError for an empty or unusable value."""
    value = text.strip()
    if not value:
        raise ImageSourceError("Type a file path or an image URL first.")
    if kind == "url":
        if not is_url(value):
            raise ImageSourceError(f"An image URL starts with http:// or https://, not {value[:40]!r}.")
        return ImageUrl(value)
    return ImageFile(Path(value).expanduser())


async def read_qr_text(source: ScanSource, http: httpx.AsyncClient) -> str:
    """The text of the QR in `source`. Fetching is async; decoding (CPU) runs in a thread."""
    if isinstance(source, ImageUrl):
        data = await fetch_image(source.url, http)
        return await asyncio.to_thread(decode_qr_bytes, data)
    return await asyncio.to_thread(decode_qr_file, source.path)


Signature = tuple[int, int]  # (mtime_ns, size): a file saved again under the same name counts as new


@dataclass
class FolderWatch:
    """Tells which image files in `folder` are new since the previous `poll()`.

    The first poll only takes stock: what was there before the watch started is not a picture taken
    now. A file that changes afterwards (a screenshot tool writing in two steps, or a new image saved
    under the same name) is reported again, so a half-written file that failed to decode gets a
    second chance once it is complete.
    """

    folder: Path
    _seen: dict[str, Signature] = field(default_factory=dict)
    _started: bool = False

    def poll(self) -> list[Path]:
        """New or changed image files, oldest first; ImageSourceError if the folder cannot be listed."""
        current = dict(self._scan())
        fresh = [name for name, signature in current.items() if self._seen.get(name) != signature]
        self._seen = current
        if not self._started:
            self._started = True
            return []
        fresh.sort(key=lambda name: (current[name][0], name))
        return [self.folder / name for name in fresh]

    def _scan(self) -> Iterable[tuple[str, Signature]]:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError as exc:
            raise ImageSourceError(f"The folder {self.folder} does not exist.") from exc
        except NotADirectoryError as exc:
            raise ImageSourceError(f"{self.folder} is not a folder.") from exc
        except OSError as exc:
            raise ImageSourceError(f"Cannot list {self.folder}: {exc.strerror or exc}.") from exc
        for entry in entries:
            if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue  # hidden and temporary files, and anything that is not a picture
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue  # deleted between the listing and the stat
            yield entry.name, (stat.st_mtime_ns, stat.st_size)
