"""Test doubles: a fake device API that verifies signatures on its own, and QR image makers.

The fake deliberately re-implements the canonical string of docs/device-api.md instead of importing
`companion.core.signing`, so a mistake there cannot be mirrored here and go unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import qrcode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from PIL import Image

from companion.core.keystore import Enrolment, public_key_bytes

ISSUER = "http://127.0.0.1:8741"
NOW = 1_795_000_000  # 2026-11-18, an arbitrary fixed instant
ISO = "2026-11-25T15:00:00Z"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def expected_canonical(request: httpx.Request) -> bytes:
    """docs/device-api.md's six lines, spelled out independently of the companion's code."""
    return (
        "vouchsim-device-v1\n"
        f"{request.method.upper()}\n"
        f"{request.url.raw_path.decode('ascii')}\n"
        f"{request.headers['Vouch-Timestamp']}\n"
        f"{request.headers['Vouch-Nonce']}\n"
        f"{hashlib.sha256(request.content).hexdigest()}"
    ).encode()


def verify_request(request: httpx.Request, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(b64url_decode(request.headers["Vouch-Signature"]), expected_canonical(request))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def fingerprint_of(raw: bytes) -> str:
    digits = hashlib.sha256(raw).hexdigest()[:16].upper()
    return f"{digits[0:4]}-{digits[4:8]}-{digits[8:12]}-{digits[12:16]}"


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def pairing_uri(issuer: str = ISSUER, secret: str | None = None) -> str:
    return f"vouchsim://pair?v=1&iss={quote(issuer, safe='')}&secret={secret or new_secret()}"


def qr_image(text: str, *, box_size: int = 10, border: int = 4) -> Image.Image:
    code = qrcode.QRCode(box_size=box_size, border=border)
    code.add_data(text)
    code.make(fit=True)
    image: Image.Image = code.make_image().get_image()
    return image.convert("L")


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def enrolment_for(key: Ed25519PrivateKey, issuer: str = ISSUER) -> Enrolment:
    """A stored enrolment for `key`, as if it had enrolled with `issuer`."""
    return Enrolment(
        device_id="dev_1",
        user_id="usr_1",
        name="Pixel of QA",
        fingerprint=fingerprint_of(public_key_bytes(key)),
        issuer=issuer,
        server_url=issuer,
        enrolled_at=datetime(2026, 11, 25, 15, 0, tzinfo=UTC),
    )


def error(status: int, code: str, description: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description or code})


@dataclass
class Device:
    device_id: str
    user_id: str
    name: str
    public_key: Ed25519PublicKey
    raw_key: bytes
    nonces: set[str] = field(default_factory=set)

    def info(self, issuer: str) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "user_id": self.user_id,
            "name": self.name,
            "fingerprint": fingerprint_of(self.raw_key),
            "issuer": issuer,
            "enrolled_at": ISO,
        }


@dataclass
class Pairing:
    pairing_id: str
    status: str = "pending"
    device_id: str | None = None
    codes: list[str] = field(default_factory=list)


Route = Callable[[httpx.Request, Device], httpx.Response]


class FakeDeviceServer:
    """Enough of the device API for the companion: enrolment, pairings, connections, signature checks."""

    def __init__(
        self, *, issuer: str = ISSUER, clock: Callable[[], float] = time.time, skew: int = 120
    ) -> None:
        self.issuer = issuer
        self.clock = clock
        self.skew = skew
        self.devices: dict[str, Device] = {}
        self.pairings: dict[str, Pairing] = {}
        self.connections: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.images: dict[str, bytes] = {}
        self.next_error: httpx.Response | None = None
        self.client_name = "Acme Agent Client"  # what pairing contexts show; tests may make it hostile

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- scenario set-up ---------------------------------------------------------------------------------

    def open_pairing(self, *, status: str = "pending") -> str:
        """A pairing waiting to be scanned; returns the text its QR carries."""
        secret = new_secret()
        self.pairings[secret] = Pairing(pairing_id=f"pair_{len(self.pairings) + 1}", status=status)
        return pairing_uri(self.issuer, secret)

    def pairing(self, pairing_id: str) -> Pairing:
        return next(p for p in self.pairings.values() if p.pairing_id == pairing_id)

    def add_connection(self, device_id: str, client_name: str = "Acme Agent Client") -> dict[str, Any]:
        connection = {
            "connection_id": f"conn_{len(self.connections) + 1}",
            "device_id": device_id,
            "client_id": "vsc_1",
            "client_name": client_name,
            "scopes": ["identity", "delegation"],
            "created_at": ISO,
            "last_used_at": None,
            "revoked_at": None,
        }
        self.connections.insert(0, connection)
        return connection

    # --- the API -----------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "images.test":
            body = self.images.get(request.url.path)
            return httpx.Response(200, content=body) if body is not None else httpx.Response(404)
        if self.next_error is not None:
            response, self.next_error = self.next_error, None
            return response
        if request.url.path == "/device/enrol" and request.method == "POST":
            return self._enrol(request)
        device = self._authenticate(request)
        if device is None:
            return error(401, "invalid_signature", "The request signature is not valid.")
        return self._route(request, device)

    def _route(self, request: httpx.Request, device: Device) -> httpx.Response:
        # Match on the raw path so an escaped slash inside an id stays inside its segment.
        method, path = request.method, request.url.raw_path.decode("ascii").partition("?")[0]
        if (method, path) == ("GET", "/device/me"):
            return httpx.Response(200, json=device.info(self.issuer))
        if (method, path) == ("POST", "/device/pairings/claim"):
            return self._claim(request, device)
        if match := re.fullmatch(r"/device/pairings/([^/]+)/(approve|decline)", path):
            return (
                self._decide(device, unquote(match[1]), match[2]) if method == "POST" else httpx.Response(405)
            )
        if (method, path) == ("GET", "/device/connections"):
            mine = [self._public(c) for c in self.connections if c["device_id"] == device.device_id]
            return httpx.Response(200, json={"connections": mine})
        if (match := re.fullmatch(r"/device/connections/([^/]+)", path)) and method == "DELETE":
            return self._revoke(device, unquote(match[1]))
        return error(404, "not_found", "No such endpoint.")

    def _enrol(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if set(body) != {"public_key", "name"} or not 1 <= len(body["name"]) <= 64:
            return error(400, "invalid_request", "The enrolment body is not valid.")
        raw = b64url_decode(body["public_key"])
        public_key = Ed25519PublicKey.from_public_bytes(raw)
        if request.headers.get("Vouch-Device-Id") != "new" or not verify_request(request, public_key):
            return error(401, "invalid_signature", "The enrolment signature is not valid.")
        if any(d.raw_key == raw for d in self.devices.values()):
            return error(409, "device_exists", "This key is already enrolled.")
        n = len(self.devices) + 1
        device = Device(f"dev_{n}", f"usr_{n}", body["name"], public_key, raw)
        self.devices[device.device_id] = device
        return httpx.Response(201, json=device.info(self.issuer))

    def _authenticate(self, request: httpx.Request) -> Device | None:
        device = self.devices.get(request.headers.get("Vouch-Device-Id", ""))
        if device is None or not verify_request(request, device.public_key):
            return None
        nonce = request.headers["Vouch-Nonce"]
        if abs(int(request.headers["Vouch-Timestamp"]) - self.clock()) > self.skew or nonce in device.nonces:
            return None
        device.nonces.add(nonce)
        return device

    def _claim(self, request: httpx.Request, device: Device) -> httpx.Response:
        body = json.loads(request.content)
        query = parse_qs(urlsplit(body.get("qr_payload", "")).query)
        if set(body) != {"qr_payload"} or query.get("iss") != [self.issuer]:
            return error(400, "invalid_qr_payload", "This is not a pairing QR of this server.")
        pairing = self.pairings.get(query.get("secret", [""])[0])
        if pairing is None:
            return error(404, "pairing_not_found", "No such pairing.")
        if pairing.device_id not in (None, device.device_id):
            return error(409, "pairing_already_claimed", "Another device claimed this pairing.")
        if pairing.status == "pending":
            pairing.status, pairing.device_id = "claimed", device.device_id
        return httpx.Response(200, json=self._context(pairing))

    def _decide(self, device: Device, pairing_id: str, decision: str) -> httpx.Response:
        pairing = next((p for p in self.pairings.values() if p.pairing_id == pairing_id), None)
        if pairing is None or pairing.device_id != device.device_id:
            return error(404, "pairing_not_found", "No such pairing.")
        if pairing.status not in ("claimed", "approved"):
            return error(409, "pairing_closed", "This pairing is closed.")
        if decision == "decline":
            pairing.status = "declined"
            return httpx.Response(200, json={"pairing_id": pairing_id, "status": "declined"})
        pairing.status = "approved"
        pairing.codes.append(f"BCDF-GH{'JKLMNPQRST'[len(pairing.codes) % 10]}K")
        return httpx.Response(
            200,
            json={
                "pairing_id": pairing_id,
                "status": "approved",
                "pairing_code": pairing.codes[-1],
                "code_expires_at": ISO,
            },
        )

    def _revoke(self, device: Device, connection_id: str) -> httpx.Response:
        for connection in self.connections:
            if connection["connection_id"] == connection_id and connection["device_id"] == device.device_id:
                connection["revoked_at"] = connection["revoked_at"] or ISO
                return httpx.Response(200, json=self._public(connection))
        return error(404, "connection_not_found", "No such connection.")

    def _context(self, pairing: Pairing) -> dict[str, Any]:
        return {
            "pairing_id": pairing.pairing_id,
            "status": pairing.status,
            "client_id": "vsc_1",
            "client_name": self.client_name,
            "redirect_host": "127.0.0.1",
            "scopes": ["identity", "delegation"],
            "requested_at": ISO,
            "expires_at": "2026-11-25T15:05:00Z",
            "issuer": self.issuer,
        }

    @staticmethod
    def _public(connection: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in connection.items() if k != "device_id"}
