"""Text that people read on a page or a device (client names, device names): one rule for every front door.

Control characters (NUL, CR/LF, escape sequences) and bidirectional formatting characters (which let a name
reorder or hide what is shown around it, "Trojan Source") are refused, not stripped: a name that needs cleaning
was not written for a person. Used by dynamic registration, Client ID Metadata Documents, the clients file and
the device API.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def display_text_problem(name: str, value: object, max_length: int) -> str | None:
    """Why `value` cannot be shown to a person as the field `name`, or None when it can. Length is counted after
    trimming, as the value is shown trimmed."""
    if not isinstance(value, str) or not value.strip():
        return f"{name} must be a non-empty string"
    if len(value.strip()) > max_length:
        return f"{name} must be at most {max_length} characters"
    if any(unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS for char in value):
        return f"{name} must not contain control or bidirectional formatting characters"
    return None


def has_control_characters(value: str) -> bool:
    """True when `value` holds a C0/C1 control character (NUL, CR, LF, tab, escape, DEL…)."""
    return any(unicodedata.category(char) == "Cc" for char in value)
