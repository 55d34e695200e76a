"""Completion for a file path typed in an `Input`: the first entry that continues what was typed.

Textual shows the suggestion greyed after the cursor; → (or End) accepts it. Folders end in `/`, so
accepting one and going on typing walks down the tree, as a shell's Tab does.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester

from vouchsim.companion.camera import IMAGE_SUFFIXES


class PathSuggester(Suggester):
    """Suggests folders, and image files unless `folders_only`; hidden entries only when asked for."""

    def __init__(self, *, folders_only: bool = False, home: Path | None = None) -> None:
        super().__init__(use_cache=False, case_sensitive=True)  # the file system changes under us
        self.folders_only = folders_only
        self._home = home

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, prefix = value.rpartition("/")
        folder = self._expand(head + "/" if head or value.startswith("/") else "")
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return None
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            if entry.name.startswith(".") and not prefix.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                return value + entry.name[len(prefix) :] + "/"
            if entry.name == prefix:
                continue  # already complete
            if not self.folders_only and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                return value + entry.name[len(prefix) :]
        return None

    def _expand(self, head: str) -> Path:
        if not head:
            return Path(".")
        if head.startswith("~") and self._home is not None:
            return self._home / head[1:].lstrip("/")
        return Path(head).expanduser()
