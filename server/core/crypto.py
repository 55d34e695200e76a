"""Secrets: generation, hashing for storage, constant-time comparison.

Every secret handed to a client or device (codes, tokens, pairing secrets) is stored only as a SHA-256 digest
(as Hydra stores only token signatures). Low-entropy values (the 8-character pairing code) are keyed with the
server's HMAC key instead, so a leaked table cannot be brute-forced offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def random_token(nbytes: int = 32) -> str:
    """A URL-safe secret with `nbytes` bytes of randomness (32 bytes = 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def new_id(prefix: str, nbytes: int = 16) -> str:
    """A public identifier such as `vsc_…`: unguessable (128 bits) but not a secret."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sealing_key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"vouchsim-seal:{purpose}".encode(), hashlib.sha256).digest()


def seal(secret: str, purpose: str, plaintext: bytes) -> str:
    """Encrypt under a key derived from `secret` (AES-256-GCM): only a holder of `secret` can open it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return b64url(nonce + AESGCM(_sealing_key(secret, purpose)).encrypt(nonce, plaintext, purpose.encode()))


def unseal(secret: str, purpose: str, sealed: str) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = b64url_decode(sealed)
    try:
        return AESGCM(_sealing_key(secret, purpose)).decrypt(raw[:12], raw[12:], purpose.encode())
    except (InvalidTag, ValueError):
        return None
