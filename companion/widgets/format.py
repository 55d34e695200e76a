"""How the TUI spells untrusted text, instants and durations. Pure functions, no Textual.

Everything a server or a QR code sends is untrusted: `clean` drops control characters (terminal escapes,
newlines) and widgets show it as plain text, never as markup, so a client named `[b]Bank[/b]` reads as
exactly that.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime


def clean(text: str) -> str:
    """One line of untrusted text, control characters shown as `?`."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in " ".join(text.split()))


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, with `…` when something was cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def clean_list(items: Iterable[str], empty: str = "(none)") -> str:
    return ", ".join(clean(item) for item in items) or empty


def instant(moment: datetime | None, missing: str = "-") -> str:
    """`2026-11-25 15:00 UTC`: always UTC, so every screen (and every screenshot) agrees."""
    if moment is None:
        return missing
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_instant(moment: datetime | None, missing: str = "-") -> str:
    """`Nov 25 15:00`, UTC, for tables whose header says so."""
    if moment is None:
        return missing
    return moment.astimezone(UTC).strftime("%b %d %H:%M")


def countdown(seconds: float) -> str:
    """`4:05`, `0:09`, `1:02:03`; `0:00` once it is over."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def ago(moment: datetime | None, now: datetime, missing: str = "never") -> str:
    """`just now`, `5 min ago`, `3 h ago`, `2 days ago`; an instant in the future reads `just now`."""
    if moment is None:
        return missing
    seconds = int((now - moment).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return "1 day ago" if days == 1 else f"{days} days ago"


def pairing_code(code: str) -> str:
    """`XXXX-XXXX` upper-case, whatever dash or spacing the server used (docs/device-api.md)."""
    compact = "".join(code.split()).replace("-", "").upper()
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else clean(code)
