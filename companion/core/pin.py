"""The local PIN: a second factor the person types on this device before it approves a pairing.

A pairing QR can be shown to someone who did not ask for it (a QR-linking attack: "scan this to get
the prize"); WhatsApp and Signal ask for a local confirmation before linking for that reason. The PIN is
set at enrolment and stored only as a salted scrypt hash in `pin.json` beside the device key, 0600 like
it: whoever reads the file learns neither the PIN nor anything to replay.

The file records the scrypt parameters it was made with, so they can be raised later without breaking
PINs set earlier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

import msgspec

from vouchsim.companion.core.errors import CompanionError, KeystoreError

PIN_FILE: Final = "pin.json"
MIN_LENGTH: Final = 4
MAX_LENGTH: Final = 12
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
SCHEME: Final = "scrypt"
# n=2**14, r=8, p=1: 16 MiB and ~50 ms per check, OWASP's floor for scrypt; a PIN has little entropy, so
# the work factor, not the PIN, is what slows an offline guesser down.
DEFAULT_COST: Final = 2**14
BLOCK_SIZE: Final = 8
PARALLELISM: Final = 1
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


class InvalidPinError(CompanionError):
    default_message = f"A PIN is {MIN_LENGTH} to {MAX_LENGTH} digits."


class PinNotSetError(CompanionError):
    default_message = "No local PIN is set on this device."


class PinRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    scheme: str
    n: int
    r: int
    p: int
    salt: str  # base64url, unpadded
    hash: str  # base64url, unpadded


def check_pin(pin: str) -> str:
    """`pin` if it is 4 to 12 ASCII digits; InvalidPinError otherwise."""
    if not (MIN_LENGTH <= len(pin) <= MAX_LENGTH and pin.isascii() and pin.isdigit()):
        raise InvalidPinError()
    return pin


class PinStore:
    """Sets and checks the PIN kept in `state_dir/pin.json`."""

    def __init__(self, state_dir: Path, *, cost: int = DEFAULT_COST) -> None:
        if cost < 2 or cost & (cost - 1):
            raise ValueError("the scrypt cost must be a power of two above 1")
        self.path = state_dir / PIN_FILE
        self._cost = cost

    def is_set(self) -> bool:
        return self._read() is not None

    def set(self, pin: str) -> None:
        """Replace the PIN (InvalidPinError for a malformed one)."""
        salt = secrets.token_bytes(SALT_BYTES)
        record = PinRecord(
            scheme=SCHEME,
            n=self._cost,
            r=BLOCK_SIZE,
            p=PARALLELISM,
            salt=_encode(salt),
            hash=_encode(_derive(check_pin(pin), salt, self._cost, BLOCK_SIZE, PARALLELISM)),
        )
        self._write(msgspec.json.format(msgspec.json.encode(record)))

    def verify(self, pin: str) -> bool:
        """Whether `pin` is the PIN; PinNotSetError when none is set, KeystoreError for a damaged file."""
        record = self._read()
        if record is None:
            raise PinNotSetError()
        if not (MIN_LENGTH <= len(pin) <= MAX_LENGTH and pin.isascii() and pin.isdigit()):
            return False
        expected = _decode(record.hash, self.path)
        actual = _derive(pin, _decode(record.salt, self.path), record.n, record.r, record.p)
        return hmac.compare_digest(actual, expected)

    def _read(self) -> PinRecord | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeystoreError(f"Cannot read {self.path}: {exc.strerror}.") from exc
        try:
            record = msgspec.json.decode(data, type=PinRecord)
        except msgspec.DecodeError as exc:
            raise KeystoreError(f"The PIN record in {self.path} is damaged.") from exc
        if record.scheme != SCHEME or not (1 < record.n <= 2**20 and 0 < record.r <= 32 and 0 < record.p <= 16):
            raise KeystoreError(f"The PIN record in {self.path} uses parameters this companion does not accept.")
        return record

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)  # exactly 0600, whatever the umask left
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KeystoreError(f"Cannot write {self.path}: {exc.strerror}.") from exc


def _derive(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: scrypt needs 128·n·r bytes; OpenSSL's default cap (32 MiB) is too tight above n = 2**14.
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=256 * n * r)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str, path: Path) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeystoreError(f"The PIN record in {path} is damaged.") from exc
