"""Helpers for the testbed's HTTP tests: an agent with real tokens (through the pairing flow), its MCP calls, and a
device that remembers every signature it sent (to prove none reaches the journal)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import TestClient

from server.tests.delegation_support import sign
from server.tests.support import Device, Flow, authorize_params, csrf_of, exchange, pkce, qr_payload_for, redirect_query

TOKEN = "testbed-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAYMENT = {"audienceId": "aud_test_payments", "purpose": "Prepare a payment.", "scopes": ["payments.identity"]}


@dataclass
class RecordingDevice(Device):
    """A trusted device that keeps what it signed: its signatures, and the QR payloads it scanned."""

    secrets: list[str] = field(default_factory=list)

    def headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        headers = super().headers(method, path, body)
        self.secrets.append(headers["Vouch-Signature"])
        return headers


@dataclass
class Authorized:
    """A client that went through the whole flow, and every secret it saw on the way."""

    info: dict[str, Any]
    tokens: dict[str, Any]
    secrets: list[str]

    @property
    def client_id(self) -> str:
        return str(self.info["client_id"])

    @property
    def access_token(self) -> str:
        return str(self.tokens["access_token"])


def authorize(flow: Flow, info: dict[str, Any]) -> Authorized:
    """Register-to-token as a browser and a trusted device: pairing the first time, session consent after."""
    verifier, challenge = pkce()
    start = flow.start(authorize_params(info, challenge))
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    found: list[str] = [verifier]
    if location.endswith("/consent"):
        page = flow.client.get(location)
        done = flow.client.post(location, data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    else:
        found.append(qr_payload_for(flow.client, location))
        code = flow.scan_and_approve(location)
        found.append(code)
        done = flow.submit(location, code)
    assert done.status_code == 303, done.text
    code = redirect_query(done.headers["location"])["code"]
    found.append(code)
    extra = {"client_secret": info["client_secret"]} if info.get("client_secret") else {}
    response = exchange(flow.client, info, code, verifier, **extra)
    assert response.status_code == 200, response.text
    tokens = response.json()
    found += [tokens["access_token"], tokens["refresh_token"], *([info["client_secret"]] if extra else [])]
    return Authorized(info, tokens, found)


@dataclass
class Agent:
    """Raw Streamable HTTP with one access token."""

    client: TestClient[Any]
    token: str
    session_id: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
            "MCP-Protocol-Version": "2025-11-25",
        }
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    def send(self, message: dict[str, Any]) -> Any:
        return self.client.post("/mcp", content=json.dumps(message).encode(), headers=self.headers())

    def initialize(self) -> Any:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        response = self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
        if response.status_code == 200:
            self.session_id = response.headers["mcp-session-id"]
        return response

    def call(self, name: str, arguments: dict[str, Any] | None = None, request_id: int = 1) -> Any:
        params = {"name": name, "arguments": arguments or {}}
        return self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})

    def result(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(name, arguments)
        assert response.status_code == 200, response.text
        return response.json()["result"]["structuredContent"]  # type: ignore[no-any-return]


def approve_on_device(flow: Flow, delegation_id: str) -> None:
    listed = flow.device.call(flow.client, "GET", "/device/delegations").json()["delegations"]
    delegation = next(d for d in listed if d["delegation_id"] == delegation_id)
    path = f"/device/delegations/{delegation_id}/decision"
    decided = flow.device.call(flow.client, "POST", path, sign(flow.device.key, delegation).body())
    assert decided.status_code == 200, decided.text


def journal(client: TestClient[Any], **params: Any) -> list[dict[str, Any]]:
    response = client.get("/testbed/journal", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["entries"]  # type: ignore[no-any-return]


def add_fault(client: TestClient[Any], body: dict[str, Any]) -> str:
    response = client.post("/testbed/faults", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def advance(client: TestClient[Any], seconds: float) -> dict[str, Any]:
    response = client.post("/testbed/clock", json={"advance_seconds": seconds}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]
