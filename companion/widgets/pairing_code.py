"""The pairing code, large: `XXXX-XXXX` in a block font a person can read across a desk."""

from __future__ import annotations

from typing import Final

from textual.widgets import Static

from vouchsim.companion.core.text import pairing_code

# 5x5 glyphs for the RFC 8628 §6.1 alphabet the server draws codes from (BCDFGHJKLMNPQRSTVWXZ) and the dash.
GLYPHS: Final[dict[str, tuple[str, ...]]] = {
    "B": ("████ ", "█   █", "████ ", "█   █", "████ "),
    "C": (" ████", "█    ", "█    ", "█    ", " ████"),
    "D": ("████ ", "█   █", "█   █", "█   █", "████ "),
    "F": ("█████", "█    ", "████ ", "█    ", "█    "),
    "G": (" ████", "█    ", "█  ██", "█   █", " ████"),
    "H": ("█   █", "█   █", "█████", "█   █", "█   █"),
    "J": ("  ███", "    █", "    █", "█   █", " ███ "),
    "K": ("█   █", "█  █ ", "███  ", "█  █ ", "█   █"),
    "L": ("█    ", "█    ", "█    ", "█    ", "█████"),
    "M": ("█   █", "██ ██", "█ █ █", "█   █", "█   █"),
    "N": ("█   █", "██  █", "█ █ █", "█  ██", "█   █"),
    "P": ("████ ", "█   █", "████ ", "█    ", "█    "),
    "Q": (" ███ ", "█   █", "█ █ █", "█  █ ", " ██ █"),
    "R": ("████ ", "█   █", "████ ", "█  █ ", "█   █"),
    "S": (" ████", "█    ", " ███ ", "    █", "████ "),
    "T": ("█████", "  █  ", "  █  ", "  █  ", "  █  "),
    "V": ("█   █", "█   █", "█   █", " █ █ ", "  █  "),
    "W": ("█   █", "█   █", "█ █ █", "██ ██", "█   █"),
    "X": ("█   █", " █ █ ", "  █  ", " █ █ ", "█   █"),
    "Z": ("█████", "   █ ", "  █  ", " █   ", "█████"),
    "-": ("   ", "   ", "███", "   ", "   "),
}
GLYPH_HEIGHT: Final = 5


def banner(code: str) -> str | None:
    """`code` (as `XXXX-XXXX`) in the block font; None when it holds a character the font lacks."""
    text = pairing_code(code)
    if not text or any(ch not in GLYPHS for ch in text):
        return None
    rows = ("  ".join(GLYPHS[ch][row] for ch in text) for row in range(GLYPH_HEIGHT))
    return "\n".join(rows)


class PairingCode(Static):
    """The code in the block font, or as plain bold text when the server sent an unexpected character or the
    widget is too narrow for the font (the demo's companion side on a small terminal)."""

    def __init__(self, code: str, *, id: str | None = None, classes: str | None = None) -> None:
        self.code = pairing_code(code)
        self._banner = banner(code)
        super().__init__(self._banner or self.code, markup=False, id=id, classes=classes)
        self.set_class(self._banner is None, "-plain")

    def on_resize(self) -> None:
        if self._banner is None:
            return
        fits = self.content_region.width >= max(len(row) for row in self._banner.split("\n"))
        self.update(self._banner if fits else self.code)
        self.set_class(not fits, "-plain")
