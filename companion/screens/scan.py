"""Scan: choose how the "camera" gets the pairing QR (a file, an image URL, or a watched folder).

The view only finds pictures: it reports each one with `ScanSubmitted` and the app reads the QR, claims
the pairing and asks the person. Watching a folder is local I/O (no network): a worker polls the folder
every half second and reports each new image, so saving a screenshot there is like pointing a camera.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from vouchsim.companion.camera import FolderWatch, ImageFile, source_from_text
from vouchsim.companion.core.errors import CompanionError, ImageSourceError
from vouchsim.companion.core.text import clean
from vouchsim.companion.messages import ScanSubmitted
from vouchsim.companion.widgets.path_suggester import PathSuggester

Mode = Literal["file", "url", "folder"]
ScanKind = Literal["idle", "working", "done", "error"]
Sleep = Callable[[float], Awaitable[None]]

HELP: dict[Mode, str] = {
    "file": "The path of a picture of the pairing QR (a screenshot, a photo). → completes, Enter scans.",
    "url": "The http(s) URL of the QR image, e.g. copied from the authorization page.",
    "folder": "A folder that acts as the camera: every new image saved there is scanned at once.",
}
PLACEHOLDERS: dict[Mode, str] = {
    "file": "~/Pictures/pairing-qr.png",
    "url": "http://127.0.0.1:8741/pair/…/qr.png",
    "folder": "~/Pictures/Screenshots",
}


@dataclass(frozen=True)
class ScanStatus:
    """What the last scan came to; set by the app (attributes down)."""

    kind: ScanKind = "idle"
    text: str = ""
    hint: str = ""


class ScanView(Vertical):
    status: reactive[ScanStatus] = reactive(ScanStatus, init=False)
    watching: reactive[Path | None] = reactive(None, init=False)

    def __init__(self, *, sleep: Sleep, poll_interval: float, id: str | None = None) -> None:
        super().__init__(id=id)
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._file_suggester = PathSuggester()
        self._folder_suggester = PathSuggester(folders_only=True)

    def compose(self) -> ComposeResult:
        yield Static("How does the camera get the picture?", classes="section-title")
        with RadioSet(id="scan-mode"):
            yield RadioButton("Image file", id="mode-file", value=True)
            yield RadioButton("Image URL", id="mode-url")
            yield RadioButton("Watched folder", id="mode-folder")
        with Horizontal(id="scan-row"):
            yield Input(id="scan-input", placeholder=PLACEHOLDERS["file"], suggester=self._file_suggester)
            yield Button("Scan", id="scan-go", variant="primary")
        yield Static(HELP["file"], id="scan-help", markup=False)
        yield Static(id="scan-status", markup=False)
        yield Static(id="scan-hint", markup=False)

    @property
    def mode(self) -> Mode:
        pressed = self.query_one(RadioSet).pressed_button
        mode = (pressed.id or "mode-file").removeprefix("mode-") if pressed else "file"
        return "url" if mode == "url" else "folder" if mode == "folder" else "file"

    @on(RadioSet.Changed)
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.stop_watching()
        mode = self.mode
        field = self.query_one("#scan-input", Input)
        field.placeholder = PLACEHOLDERS[mode]
        suggesters = {"file": self._file_suggester, "folder": self._folder_suggester, "url": None}
        field.suggester = suggesters[mode]
        self.query_one("#scan-help", Static).update(HELP[mode])
        self._show_button()

    @on(Input.Submitted, "#scan-input")
    @on(Button.Pressed, "#scan-go")
    def _submitted(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        """Scan what the form holds, or start / stop watching the folder."""
        mode = self.mode
        text = self.query_one("#scan-input", Input).value
        if mode == "folder":
            if self.watching is not None:
                self.stop_watching()
            elif text.strip():
                self.start_watching(Path(text.strip()).expanduser())
            else:
                self.status = ScanStatus("error", "Type the folder to watch first.")
            return
        try:
            source = source_from_text(mode, text)
        except CompanionError as exc:
            self.status = ScanStatus("error", str(exc), exc.hint)
            return
        self.post_message(ScanSubmitted(source))

    def start_watching(self, folder: Path) -> None:
        self.watching = folder
        self._watch(folder)

    def stop_watching(self) -> None:
        if self.watching is not None:
            self.workers.cancel_group(self, "watch")
            self.watching = None

    def watch_watching(self, folder: Path | None) -> None:
        self._show_button()
        self.query_one("#scan-input", Input).disabled = folder is not None
        if folder is None:
            self.query_one("#scan-help", Static).update(HELP[self.mode])
        else:
            self.query_one("#scan-help", Static).update(
                f"Watching {folder}: save a picture of the pairing QR there. Files already there are ignored."
            )

    def _show_button(self) -> None:
        button = self.query_one("#scan-go", Button)
        if self.mode != "folder":
            button.label, button.variant = "Scan", "primary"
        elif self.watching is None:
            button.label, button.variant = "Watch", "primary"
        else:
            button.label, button.variant = "Stop watching", "warning"

    @work(group="watch", exclusive=True)
    async def _watch(self, folder: Path) -> None:
        watch = FolderWatch(folder)
        while True:
            try:
                fresh = watch.poll()
            except ImageSourceError as exc:
                self.status = ScanStatus("error", str(exc))
                self.watching = None
                return
            for path in fresh:
                self.post_message(ScanSubmitted(ImageFile(path), from_watch=True))
            await self._sleep(self._poll_interval)

    def watch_status(self, status: ScanStatus) -> None:
        line = self.query_one("#scan-status", Static)
        icon = {"idle": "", "working": "… ", "done": "✔ ", "error": "✖ "}[status.kind]
        line.update(f"{icon}{clean(status.text)}" if status.text else "")
        for kind in ("working", "done", "error"):
            line.set_class(status.kind == kind, f"-{kind}")
        self.query_one("#scan-hint", Static).update(clean(status.hint))
