"""Error descriptions that are safe to put on the wire.

RFC 6749 §5.2 limits `error_description` to %x20-21 / %x23-5B / %x5D-7E, and Authlib raises `ValueError` (a 500)
when a description breaks that rule. Descriptions that quote client input go through `safe_description`.
"""

from __future__ import annotations


def _allowed(char: str) -> bool:
    code = ord(char)
    return 0x20 <= code <= 0x7E and char not in ('"', "\\")


def safe_description(text: str) -> str:
    return "".join(char if _allowed(char) else "?" for char in text)
