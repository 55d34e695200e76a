"""Test helpers that play the other parties over HTTP: an MCP client (registration, PKCE) and a trusted device
(request signing per docs/device-api.md, written again here so the server's tests do not import the companion)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar.testing import TestClient


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce() -> tuple[str, str]:
    verifier = b64url(secrets.token_bytes(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Device:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    device_id: str = "new"
    clock: Any = None

    @property
    def public_key(self) -> str:
        return b64url(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        now = int(self.clock.now().timestamp()) if self.clock else int(time.time())
        nonce = b64url(secrets.token_bytes(16))
        canonical = "\n".join(
            ["vouchsim-device-v1", method.upper(), path, str(now), nonce, hashlib.sha256(body).hexdigest()]
        )
        return {
            "Vouch-Device-Id": self.device_id,
            "Vouch-Timestamp": str(now),
            "Vouch-Nonce": nonce,
            "Vouch-Signature": b64url(self.key.sign(canonical.encode())),
            "Content-Type": "application/json",
        }

    def call(self, client: TestClient[Any], method: str, path: str, json_body: Any = None) -> Any:
        import json

        body = json.dumps(json_body).encode() if json_body is not None else b""
        return client.request(method, path, content=body, headers=self.headers(method, path, body))

    def enrol(self, client: TestClient[Any], name: str = "Test phone") -> dict[str, Any]:
        response = self.call(client, "POST", "/device/enrol", {"public_key": self.public_key, "name": name})
        assert response.status_code == 201, response.text
        self.device_id = response.json()["device_id"]
        return response.json()  # type: ignore[no-any-return]


def register(client: TestClient[Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "client_name": "Acme Agent Client",
        "redirect_uris": ["http://127.0.0.1:33418/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "identity delegation",
        **overrides,
    }
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def authorize_params(client_info: dict[str, Any], challenge: str, **overrides: Any) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_info["client_id"],
        "redirect_uri": client_info["redirect_uris"][0],
        "scope": "identity delegation",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "opaque-state",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def qr_payload_for(client: TestClient[Any], pairing_path: str) -> str:
    """Decode the page's QR image the way a phone would (pyzbar)."""
    import io

    from PIL import Image
    from pyzbar.pyzbar import decode

    png = client.get(f"{pairing_path}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    results = decode(Image.open(io.BytesIO(png.content)))
    assert results, "the QR image did not decode"
    return results[0].data.decode()


def redirect_query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Flow:
    """Drives /oauth/authorize as a browser plus a trusted device, up to the redirect with a code."""

    client: TestClient[Any]
    device: Device

    def start(self, params: dict[str, str]) -> Any:
        return self.client.get("/oauth/authorize", params=params, follow_redirects=False)

    def pairing_page(self, params: dict[str, str]) -> str:
        response = self.start(params)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/oauth/authorize/pairing/"), location
        return location

    def scan_and_approve(self, pairing_path: str) -> str:
        payload = qr_payload_for(self.client, pairing_path)
        claimed = self.device.call(self.client, "POST", "/device/pairings/claim", {"qr_payload": payload})
        assert claimed.status_code == 200, claimed.text
        pairing_id = claimed.json()["pairing_id"]
        approved = self.device.call(self.client, "POST", f"/device/pairings/{pairing_id}/approve")
        assert approved.status_code == 200, approved.text
        return approved.json()["pairing_code"]  # type: ignore[no-any-return]

    def submit(self, pairing_path: str, code: str) -> Any:
        page = self.client.get(pairing_path)
        return self.client.post(pairing_path, data={"csrf": csrf_of(page.text), "code": code}, follow_redirects=False)

    def authorize(self, params: dict[str, str]) -> dict[str, str]:
        pairing_path = self.pairing_page(params)
        code = self.scan_and_approve(pairing_path)
        response = self.submit(pairing_path, code)
        assert response.status_code == 303, response.text
        return redirect_query(response.headers["location"])


def exchange(client: TestClient[Any], client_info: dict[str, Any], code: str, verifier: str, **extra: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client_info["redirect_uris"][0],
        "code_verifier": verifier,
        "client_id": client_info["client_id"],
        **extra,
    }
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})
