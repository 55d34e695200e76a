"""Request signing for the trusted-device API (docs/device-api.md, "Device keys and request signing").

Every `/device/…` request carries `Vouch-Device-Id`, `Vouch-Timestamp`, `Vouch-Nonce` and `Vouch-Signature`:
an Ed25519 signature over six lines that pin the method, the exact path and query, the time, a fresh nonce
and the SHA-256 of the exact body bytes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_VERSION = "vouchsim-device-v1"
ENROLMENT_DEVICE_ID = "new"  # the Vouch-Device-Id of POST /device/enrol, before an id exists
NONCE_BYTES = 16

Clock = Callable[[], float]
RandomBytes = Callable[[int], bytes]


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as every binary value on the wire is spelled."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def canonical_string(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The six lines the signature covers, joined by '\\n' with no trailing newline."""
    lines = (SIGNATURE_VERSION, method.upper(), target, timestamp, nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8")


class RequestSigner:
    """Signs requests as one device; time and randomness are injected so tests are deterministic."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        device_id: str,
        *,
        clock: Clock = time.time,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self._key = key
        self._device_id = device_id
        self._clock = clock
        self._random_bytes = random_bytes

    def headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        """The four Vouch-* headers for `method target` with exactly `body` (b"" when there is none).

        `target` is the path and query exactly as they go on the wire, e.g. `/device/connections?x=1`.
        """
        timestamp = str(int(self._clock()))
        nonce = b64url_encode(self._random_bytes(NONCE_BYTES))
        signature = self._key.sign(canonical_string(method, target, timestamp, nonce, body))
        return {
            "Vouch-Device-Id": self._device_id,
            "Vouch-Timestamp": timestamp,
            "Vouch-Nonce": nonce,
            "Vouch-Signature": b64url_encode(signature),
        }
