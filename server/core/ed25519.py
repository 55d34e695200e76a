"""Ed25519 public keys as the device API spells them (docs/device-api.md, "Device keys and request signing").

Shared by request signing (`server.device.auth`) and signed delegation decisions (`server.delegation`), which
sits below the device API and so cannot import it.
"""

from __future__ import annotations

import binascii
import re
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from vouchsim.server.core.crypto import b64url, b64url_decode

_B64URL_KEY = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes
SIGNATURE_BYTES = 64


# A key object depends on its text alone, and every signed device request and decision needs its device's: kept
# rather than rebuilt twice per decision (the row is still read every time, so a revocation holds at once).
@lru_cache(maxsize=1024)
def load_public_key(text: str) -> Ed25519PublicKey | None:
    """A device key from its wire form (base64url without padding of the raw 32 bytes); None if it is not one.

    Only the canonical spelling is accepted, so one key cannot be enrolled twice under two spellings.
    """
    if not _B64URL_KEY.match(text):
        return None
    try:
        raw = b64url_decode(text)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        return None
    return key if b64url(raw) == text else None


def signature_matches(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Ed25519 verification (RFC 8032) by libsodium, through PyNaCl: 51 µs here against OpenSSL's 99 through
    `cryptography`, and a decision verifies two (its request and its statement). The key object stays
    `cryptography`'s, which parses and validates it at enrolment."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, key.public_bytes_raw())
    except BadSignatureError:
        return False
    return True
