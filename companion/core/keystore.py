"""The device's Ed25519 key and its enrolment record, kept in the companion's state directory.

The directory is 0700 and both files 0600: the key is this device's whole identity. Files are written
to a temporary name and renamed, so a crash never leaves half a key behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vouchsim.companion.core.errors import KeystoreError, NotEnrolledError
from vouchsim.companion.core.signing import b64url_encode

KEY_FILE = "device_key.pem"
ENROLMENT_FILE = "enrolment.json"
DIR_MODE = 0o700
FILE_MODE = 0o600


class Enrolment(msgspec.Struct, frozen=True, kw_only=True):
    """What this device learnt when it enrolled, plus where it talks to the server."""

    device_id: str
    user_id: str
    name: str
    fingerprint: str
    issuer: str  # as the server names itself; pairing QRs must carry this issuer
    server_url: str  # the URL this companion used; may differ from the issuer behind a proxy
    enrolled_at: datetime


@dataclass(frozen=True)
class DeviceIdentity:
    """An enrolled device: what signing a request needs."""

    key: Ed25519PrivateKey
    enrolment: Enrolment

    @property
    def device_id(self) -> str:
        return self.enrolment.device_id


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64url(key: Ed25519PrivateKey) -> str:
    return b64url_encode(public_key_bytes(key))


def fingerprint(raw_public_key: bytes) -> str:
    """First 16 hex digits of SHA-256(raw public key), upper-case, in fours: `9F2A-11C0-7B3E-5D21`."""
    digits = hashlib.sha256(raw_public_key).hexdigest()[:16].upper()
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


class Keystore:
    """Reads and writes the device key and enrolment record under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.key_path = state_dir / KEY_FILE
        self.enrolment_path = state_dir / ENROLMENT_FILE

    def read_key(self) -> Ed25519PrivateKey | None:
        """The stored key, or None when there is none yet."""
        data = self._read(self.key_path)
        if data is None:
            return None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeystoreError(f"The device key in {self.key_path} is unreadable.") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeystoreError(f"The device key in {self.key_path} is not an Ed25519 key.")
        return key

    def read_enrolment(self) -> Enrolment | None:
        """The enrolment record, or None when this device has not enrolled yet."""
        data = self._read(self.enrolment_path)
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=Enrolment)
        except msgspec.DecodeError as exc:
            raise KeystoreError(f"The enrolment record in {self.enrolment_path} is damaged.") from exc

    def load_identity(self) -> DeviceIdentity:
        """Key and record together; NotEnrolledError until `save` has run once."""
        enrolment = self.read_enrolment()
        if enrolment is None:
            raise NotEnrolledError(f"This companion is not enrolled yet (no record in {self.state_dir}).")
        key = self.read_key()
        if key is None:
            raise KeystoreError(f"The enrolment in {self.state_dir} has no device key next to it.")
        if fingerprint(public_key_bytes(key)) != enrolment.fingerprint:
            raise KeystoreError(f"The device key in {self.key_path} does not match the enrolment record.")
        return DeviceIdentity(key=key, enrolment=enrolment)

    def save(self, key: Ed25519PrivateKey, enrolment: Enrolment) -> DeviceIdentity:
        """Store key then record; the record is what marks the device as enrolled."""
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._ensure_dir()
        self._write_private(self.key_path, pem)
        self._write_private(self.enrolment_path, msgspec.json.format(msgspec.json.encode(enrolment)))
        return DeviceIdentity(key=key, enrolment=enrolment)

    def wipe(self) -> None:
        """Forget this device here: the enrolment record first (what marks it enrolled), then the key."""
        for path in (self.enrolment_path, self.key_path):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise KeystoreError(f"Cannot delete {path}: {exc.strerror}.") from exc

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeystoreError(f"Cannot read {path}: {exc.strerror}.") from exc

    def _ensure_dir(self) -> None:
        try:
            self.state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask and ignored for an existing directory.
            os.chmod(self.state_dir, DIR_MODE)
        except OSError as exc:
            raise KeystoreError(f"Cannot create {self.state_dir}: {exc.strerror}.") from exc

    def _write_private(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)  # exactly 0600, whatever the umask left
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KeystoreError(f"Cannot write {path}: {exc.strerror}.") from exc
