"""How the companion spells things, in every front end (CLI, TUI, side-car, test kit): untrusted text, instants,
durations, pairing codes, one line per decision, and plain-text tables. Pure functions.

Everything a server or a QR code sends is untrusted: `clean` drops control characters (terminal escapes,
newlines) and front ends show the result as plain text, never as markup, so a client named `[b]Bank[/b]` reads
as exactly that.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from vouchsim.companion.core.schemas import Delegation


def safe(text: str) -> str:
    """Untrusted text with its control characters shown as `?`, spacing kept (a signed statement, as signed)."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)


def clean(text: str) -> str:
    """One line of untrusted text: runs of whitespace become one space, control characters `?`."""
    return safe(" ".join(text.split()))


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, with `…` when something was cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def clean_list(items: Iterable[str], empty: str = "(none)") -> str:
    return ", ".join(clean(item) for item in items) or empty


def sentence(*parts: str) -> str:
    """Sentences joined with one space, each ending with exactly one full stop (or its own ? or !): an error and
    its hint, whatever punctuation each was written with."""
    out = []
    for part in parts:
        text = " ".join(part.split()).rstrip(".")
        if text:
            out.append(text if text[-1] in "?!…" else f"{text}.")
    return " ".join(out)


def count(n: int, noun: str) -> str:
    """`1 decision`, `3 decisions`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- instants and durations ----------------------------------------------------------------------------------


def when(moment: datetime | None, missing: str = "-") -> str:
    """`2026-11-25 15:00:40 UTC`: to the second, for the CLI's output (scripts compare them)."""
    if moment is None:
        return missing
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def expires_in(moment: datetime, now: datetime) -> str:
    """`4m 05s`, `45s`, `1h 02m`, or `expired`."""
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


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


# --- what the companion shows of the server's objects ---------------------------------------------------------


def pairing_code(code: str) -> str:
    """`XXXX-XXXX` upper-case, whatever dash or spacing the server used (docs/device-api.md); anything unexpected
    is shown as sent (cleaned)."""
    compact = "".join(code.split()).replace("-", "").upper()
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else clean(code)


def scopes_of(delegation: Delegation) -> str:
    return safe(",".join(delegation.scopes)) or "-"


def decision_line(verb: str, delegation: Delegation, reason: str | None = None) -> str:
    """`approved dlg_… aud_test_payments payments.identity,payments.prepare (rule 2)`: one line per decision, the
    same from `watch`, `approve`, `deny`, `revoke` and the side-car, so scripts can read it."""
    # Fields are separated by spaces: a newline in one is shown as `?`, never folded into a space.
    line = f"{safe(verb)} {safe(delegation.delegation_id)} {safe(delegation.audience_id)} {scopes_of(delegation)}"
    return f"{line} ({clean(reason)})" if reason else line


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, as wide as their widest cell; no trailing spaces."""
    everything = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in everything
    ]
