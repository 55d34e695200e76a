"""The hint bar: one line under the status bar that names the next step, so the next key is always on screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.reactive import reactive
from textual.widgets import Static

from vouchsim.companion.core.text import clean

HintKind = Literal["next", "done", "problem"]
_ICONS: dict[HintKind, str] = {"next": "▶ ", "done": "✔ ", "problem": "✖ "}


@dataclass(frozen=True)
class Hint:
    """What the app says comes next (`next`), that the story is over (`done`), or what went wrong (`problem`)."""

    text: str = ""
    kind: HintKind = "next"


class HintBar(Static):
    hint: reactive[Hint] = reactive(Hint, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(markup=False, id=id)

    def on_mount(self) -> None:
        self.watch_hint(self.hint)

    def watch_hint(self, hint: Hint) -> None:
        self.update(f"{_ICONS[hint.kind]}{clean(hint.text)}" if hint.text else "")
        self.display = bool(hint.text)
        for kind in _ICONS:
            self.set_class(hint.kind == kind, f"-{kind}")
