"""Test doubles: a fake device API that verifies signatures on its own, and QR image makers.

The fake deliberately re-implements the canonical string of docs/device-api.md and the decision statement
of docs/delegations.md instead of importing `companion.core.signing` or `companion.core.decisions`, so a
mistake there cannot be mirrored here and go unnoticed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import msgspec
import qrcode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from PIL import Image

from vouchsim.companion.core.keystore import Enrolment, public_key_bytes
from vouchsim.companion.core.schemas import Delegation

ISSUER = "http://127.0.0.1:8741"
NOW = 1_795_000_000  # 2026-11-18, an arbitrary fixed instant
ISO = "2026-11-25T15:00:00Z"
DELEGATION_TTL = 300
TOKEN_TTL = 600


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


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_statement(record: dict[str, Any], decision: str, nonce: str) -> bytes:
    """docs/delegations.md's signed statement, spelled out key by key from the server's own record."""

    def value(v: object) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    return (
        "vouchsim-delegation-decision-v1\n"
        "{"
        f'"audience_id":{value(record["audience_id"])},'
        f'"binding_message":{value(record["binding_message"])},'
        f'"decision":{value(decision)},'
        f'"delegation_id":{value(record["delegation_id"])},'
        f'"expires_at":{value(record["expires_at"])},'
        f'"nonce":{value(nonce)},'
        f'"purpose":{value(record["purpose"])},'
        f'"scopes":{value(record["scopes"])}'
        "}"
    ).encode()


def closed(status: str, description: str) -> httpx.Response:
    """`409 delegation_closed`, whose body also says the delegation's status now."""
    return error(409, "delegation_closed", description, {"status": status})


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def sample_delegation(**fields: Any) -> Delegation:
    """A pending delegation object as the device API sends it, with `fields` changed."""
    data: dict[str, Any] = {
        "delegation_id": "dlg_1",
        "status": "pending",
        "client_id": "vsc_1",
        "client_name": "Acme Agent Client",
        "connection_id": "conn_1",
        "audience_id": "aud_test_payments",
        "audience_name": "Test payments",
        "scopes": ["payments.identity", "payments.prepare"],
        "purpose": "Identify the user before preparing a payment approval.",
        "binding_message": "amber-falcon-42",
        "created_at": "2026-11-25T15:00:00Z",
        "expires_at": "2026-11-25T15:05:00Z",
        "decided_at": None,
        "decided_by": None,
        "token_expires_at": None,
    }
    data.update(fields)
    return msgspec.convert(data, Delegation)


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


def error(status: int, code: str, description: str = "", extra: dict[str, Any] | None = None) -> httpx.Response:
    body = {"error": code, "error_description": description or code, **(extra or {})}
    return httpx.Response(status, json=body)


@dataclass
class Device:
    device_id: str
    user_id: str
    name: str
    public_key: Ed25519PublicKey
    raw_key: bytes
    nonces: set[str] = field(default_factory=set)
    revoked_at: str | None = None

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

# What the next connection to the delegation stream does (FakeDeviceServer.stream_connects):
#   "follow"  replay the pending delegations, then every change until close_streams() (the default)
#   "end"     replay the pending delegations, then close the stream cleanly
#   "drop"    accept the stream, send a keep-alive, then break the connection (httpx.ReadError)
#   "revoked" replay the pending delegations, then end with the server's `device_revoked` event
#   an httpx.Response is answered as it is; an exception is raised (httpx.ConnectError: server down)
StreamPlan = str | httpx.Response | Exception
PRIVATE = ("user_id", "evidence")


class EventStream(httpx.AsyncByteStream):
    """A response body that, like a socket, is gone for the server as soon as the client closes it."""

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._events:
            yield chunk

    async def aclose(self) -> None:
        await self._events.aclose()


@dataclass
class Subscriber:
    user_id: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class FakeDeviceServer:
    """Enough of the device API for the companion: enrolment, pairings, connections, signature checks."""

    def __init__(self, *, issuer: str = ISSUER, clock: Callable[[], float] = time.time, skew: int = 120) -> None:
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
        self.delegations: list[dict[str, Any]] = []  # newest first, with PRIVATE keys
        self.decision_nonces: set[str] = set()
        self.stream_connects: list[StreamPlan] = []
        self.streams_opened = 0
        self.subscribers: list[Subscriber] = []
        # Runs on the server's record just before a decision is checked: a test's way to let another
        # device decide first, or to change the record under the device's feet.
        self.before_decision: Callable[[dict[str, Any]], None] | None = None

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

    def add_delegation(self, user_id: str = "usr_1", **fields: Any) -> dict[str, Any]:
        """A delegation an agent asked for, pending and expiring in DELEGATION_TTL; returns the record."""
        now = self.clock()
        record: dict[str, Any] = {
            "delegation_id": f"dlg_{len(self.delegations) + 1}",
            "status": "pending",
            "client_id": "vsc_1",
            "client_name": "Acme Agent Client",
            "connection_id": "conn_1",
            "audience_id": "aud_test_payments",
            "audience_name": "Test payments",
            "scopes": ["payments.identity", "payments.prepare"],
            "purpose": "Identify the user before preparing a payment approval.",
            "binding_message": "amber-falcon-42",
            "created_at": iso(now),
            "expires_at": iso(now + DELEGATION_TTL),
            "decided_at": None,
            "decided_by": None,
            "token_expires_at": None,
            "user_id": user_id,
            "evidence": None,
        }
        record.update(fields)
        self.delegations.insert(0, record)
        self._publish(record)
        return record

    def delegation(self, delegation_id: str) -> dict[str, Any]:
        return next(d for d in self.delegations if d["delegation_id"] == delegation_id)

    def revoke_device(self, device_id: str) -> None:
        """The operator's `vouchsim devices revoke`: the device's key is refused from now on."""
        self.devices[device_id].revoked_at = ISO

    def close_streams(self) -> None:
        """End every open delegation stream cleanly (after what is queued)."""
        for subscriber in self.subscribers:
            subscriber.queue.put_nowait(None)

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
        if device.revoked_at is not None:
            return error(401, "device_revoked", f"This device was revoked at {device.revoked_at}.")
        return self._route(request, device)

    def _route(self, request: httpx.Request, device: Device) -> httpx.Response:
        # Match on the raw path so an escaped slash inside an id stays inside its segment.
        method, path = request.method, request.url.raw_path.decode("ascii").partition("?")[0]
        if (method, path) == ("GET", "/device/me"):
            return httpx.Response(200, json=device.info(self.issuer))
        if (method, path) == ("DELETE", "/device/me"):
            return self._forget(request, device)
        if (method, path) == ("POST", "/device/pairings/claim"):
            return self._claim(request, device)
        if match := re.fullmatch(r"/device/pairings/([^/]+)/(approve|decline)", path):
            return self._decide(device, unquote(match[1]), match[2]) if method == "POST" else httpx.Response(405)
        if (method, path) == ("GET", "/device/connections"):
            mine = [self._public(c) for c in self.connections if c["device_id"] == device.device_id]
            return httpx.Response(200, json={"connections": mine})
        if (match := re.fullmatch(r"/device/connections/([^/]+)", path)) and method == "DELETE":
            return self._revoke(device, unquote(match[1]))
        if (method, path) == ("GET", "/device/delegations"):
            return self._list_delegations(request, device)
        if (method, path) == ("GET", "/device/delegations/stream"):
            return self._stream(request, device)
        if (match := re.fullmatch(r"/device/delegations/([^/]+)/(decision|revoke)", path)) and method == "POST":
            if match[2] == "decision":
                return self._decide_delegation(request, device, unquote(match[1]))
            return self._revoke_delegation(request, device, unquote(match[1]))
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

    def _forget(self, request: httpx.Request, device: Device) -> httpx.Response:
        device.revoked_at = ISO
        cut = []
        if request.url.params.get("cut_connections") == "true":
            for connection in self.connections:
                if connection["device_id"] == device.device_id and connection["revoked_at"] is None:
                    connection["revoked_at"] = ISO
                    cut.append(connection["connection_id"])
        body = {
            "device_id": device.device_id,
            "name": device.name,
            "fingerprint": fingerprint_of(device.raw_key),
            "revoked_at": ISO,
            "connections_cut": cut,
            "delegations_denied": [],
        }
        return httpx.Response(200, json=body)

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

    # --- delegations -------------------------------------------------------------------------------------

    def _mine(self, device: Device) -> list[dict[str, Any]]:
        return [self._expire(d) for d in self.delegations if d["user_id"] == device.user_id]

    def _expire(self, record: dict[str, Any]) -> dict[str, Any]:
        """A pending delegation read after its expires_at is expired, as the real server does."""
        expires = datetime.fromisoformat(record["expires_at"]).timestamp()
        if record["status"] == "pending" and expires < self.clock():
            record["status"] = "expired"
        return record

    def _find(self, device: Device, delegation_id: str) -> dict[str, Any] | None:
        return next((d for d in self._mine(device) if d["delegation_id"] == delegation_id), None)

    def _list_delegations(self, request: httpx.Request, device: Device) -> httpx.Response:
        which = request.url.params.get("status", "pending")
        keep: dict[str, Callable[[str], bool]] = {
            "pending": lambda status: status == "pending",
            "history": lambda status: status != "pending",
            "all": lambda status: True,
        }
        if which not in keep or request.content:
            return error(400, "invalid_request", "status is pending, history or all.")
        listing = [self.public(d) for d in self._mine(device) if keep[which](d["status"])]
        return httpx.Response(200, json={"delegations": listing})

    def _stream(self, request: httpx.Request, device: Device) -> httpx.Response:
        self.streams_opened += 1
        plan = self.stream_connects.pop(0) if self.stream_connects else "follow"
        if isinstance(plan, Exception):
            raise plan
        if isinstance(plan, httpx.Response):
            return plan
        pending = [self.public(d) for d in reversed(self._mine(device)) if d["status"] == "pending"]
        subscriber = None
        if plan == "follow":  # subscribe now, so nothing published from here on is missed
            subscriber = Subscriber(device.user_id)
            self.subscribers.append(subscriber)
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store"}
        return httpx.Response(200, headers=headers, stream=EventStream(self._events(plan, pending, subscriber)))

    async def _events(
        self, plan: str, pending: list[dict[str, Any]], subscriber: Subscriber | None
    ) -> AsyncGenerator[bytes, None]:
        try:
            yield b": keep-alive\n\n"
            if plan == "drop":
                raise httpx.ReadError("Connection reset by peer")
            for delegation in pending:
                yield sse("delegation", delegation)
            if plan == "revoked":
                yield sse("device_revoked", {"error": "device_revoked", "error_description": "Revoked just now."})
                return
            while subscriber is not None and (delegation := await subscriber.queue.get()) is not None:
                yield sse("delegation", delegation)
        finally:
            if subscriber in self.subscribers:
                self.subscribers.remove(subscriber)

    def _publish(self, record: dict[str, Any]) -> None:
        for subscriber in self.subscribers:
            if subscriber.user_id == record["user_id"]:
                subscriber.queue.put_nowait(self.public(record))

    def _decide_delegation(self, request: httpx.Request, device: Device, delegation_id: str) -> httpx.Response:
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) != {"decision", "nonce", "signature"}:
            return error(400, "invalid_request", "The body is decision, nonce and signature.")
        record = self._find(device, delegation_id)
        if record is None:
            return error(404, "delegation_not_found", "No such delegation.")
        if self.before_decision is not None:
            self.before_decision(record)
        if record["status"] != "pending":
            return closed(record["status"], f"This delegation is no longer pending: it is {record['status']}.")
        decision, nonce, signature = body["decision"], body["nonce"], body["signature"]
        if decision not in ("approve", "deny"):
            return error(400, "invalid_decision", "The decision is approve or deny.")
        if not re.fullmatch(r"[A-Za-z0-9_-]{22,}", nonce) or nonce in self.decision_nonces:
            return error(400, "invalid_decision", "The nonce is malformed or was used before.")
        statement = expected_statement(record, decision, nonce)
        try:
            device.public_key.verify(b64url_decode(signature), statement)
        except (InvalidSignature, ValueError):
            return error(400, "invalid_decision", "The signature does not verify.")
        self.decision_nonces.add(nonce)
        now = self.clock()
        record.update(
            status="approved" if decision == "approve" else "denied",
            decided_at=iso(now),
            decided_by=device.device_id,
            token_expires_at=iso(now + TOKEN_TTL) if decision == "approve" else None,
            evidence={"statement": statement, "nonce": nonce, "signature": signature},
        )
        self._publish(record)
        return httpx.Response(200, json=self.public(record))

    def _revoke_delegation(self, request: httpx.Request, device: Device, delegation_id: str) -> httpx.Response:
        record = self._find(device, delegation_id)
        if record is None:
            return error(404, "delegation_not_found", "No such delegation.")
        if record["status"] == "pending":  # as the real server answers
            return error(400, "invalid_request", "This delegation is still pending: deny it instead.")
        if record["status"] == "approved":
            record["status"] = "revoked"
            self._publish(record)
        elif record["status"] != "revoked":
            return closed(record["status"], f"This delegation is {record['status']}: there is nothing to revoke.")
        return httpx.Response(200, json=self.public(record))

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        """The delegation object as the device API shows it."""
        return {k: v for k, v in record.items() if k not in PRIVATE}

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
