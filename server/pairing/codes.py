"""Pairing codes: what the device shows and the person types on the authorization page.

8 characters from the RFC 8628 §6.1 alphabet (consonants only: no vowels to spell words, no digits or
letters that look alike), shown `XXXX-XXXX`. 20^8 ≈ 2^34.6 codes against `pairing_max_attempts` guesses.
Stored only as an HMAC under the server key, salted with the pairing id, so a leaked table cannot be
searched offline.
"""

from __future__ import annotations

import secrets

from vouchsim.server.core.crypto import constant_time_equals, keyed_hash

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1
LENGTH = 8
_IGNORED = str.maketrans("", "", "- \t")
_MAX_INPUT = 64  # anything longer is not a code someone typed


def generate() -> str:
    """A fresh code, undashed (the form that is hashed)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalise(text: str) -> str | None:
    """The code a person typed, in any case, with or without the dash or spaces; None if it cannot be one."""
    if len(text) > _MAX_INPUT:
        return None
    code = text.strip().upper().translate(_IGNORED)
    if len(code) != LENGTH or any(char not in ALPHABET for char in code):
        return None
    return code


def code_hash(hmac_key: bytes, pairing_id: str, code: str) -> str:
    return keyed_hash(hmac_key, f"{pairing_id}:{code}")


def matches(hmac_key: bytes, pairing_id: str, code: str, stored_hash: str) -> bool:
    return constant_time_equals(code_hash(hmac_key, pairing_id, code), stored_hash)
