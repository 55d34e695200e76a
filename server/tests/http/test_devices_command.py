"""`vouchsim devices list|revoke ID`: the operator revokes a lost phone straight on the database; the running server
refuses its key at once (the device row is read on every request) and, with `--cut-connections`, the tokens of
the connections it paired."""

from __future__ import annotations

import json

import pytest

from server.tests.support import Flow, authorize_params, exchange, pkce, register
from vouchsim.server.cli import main


def test_the_operator_lists_and_revokes_a_device(
    flow: Flow, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    verifier, challenge = pkce()
    info = register(flow.client)
    code = flow.authorize(authorize_params(info, challenge))["code"]
    tokens = exchange(flow.client, info, code, verifier).json()
    me = flow.device.call(flow.client, "GET", "/device/me").json()
    capsys.readouterr()

    main(["devices", "list", "--database-url", database_url])
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["DEVICE", "NAME", "FINGERPRINT", "ENROLLED", "LAST", "SEEN", "STATUS", "CONNECTIONS"]
    [row] = [line for line in listing if me["device_id"] in line]
    assert me["fingerprint"] in row and row.split()[-2:] == ["active", "1"]
    assert me["user_id"] not in "\n".join(listing)

    main(["devices", "revoke", me["device_id"], "--cut-connections", "--database-url", database_url])
    said = capsys.readouterr().out
    assert said.startswith(f"Revoked {me['device_id']} (Test phone, {me['fingerprint']}) at ")
    assert "connections cut: 1" in said

    refused = flow.device.call(flow.client, "GET", "/device/me")
    assert refused.status_code == 401 and refused.json()["error"] == "device_revoked"
    mcp = flow.client.post("/mcp", json={}, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert mcp.status_code == 401  # the connection it paired was cut, and its tokens with it

    main(["devices", "list", "--json", "--database-url", database_url])
    [shown] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown["revoked_at"] is not None and shown["live_connections"] == 0

    with pytest.raises(SystemExit) as exited:
        main(["devices", "revoke", "dev_nobody", "--database-url", database_url])
    assert str(exited.value.code) == "vouchsim: No device is called 'dev_nobody'."
