"""`application_type` in dynamic registration (MCP 2026-07-28 asks clients to send it, SEP-837; OpenID Connect
Registration §2 defines `web` and `native`): validated, stored and echoed."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from litestar.testing import TestClient

from server.tests.support import register
from vouchsim.server.storage.engine import create_engine, create_sessionmaker
from vouchsim.server.storage.repositories.clients import ClientRepository


@pytest.mark.parametrize("application_type", ["native", "web"])
def test_application_type_is_echoed_and_stored(
    client: TestClient[Any], database_url: str, application_type: str
) -> None:
    registered = register(client, application_type=application_type)
    assert registered["application_type"] == application_type

    async def stored() -> Any:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                row = await ClientRepository(session).get(registered["client_id"])
                return row.client_metadata if row else None
        finally:
            await engine.dispose()

    assert anyio.run(stored)["application_type"] == application_type


def test_no_application_type_is_fine_and_not_invented(client: TestClient[Any]) -> None:
    assert "application_type" not in register(client)


@pytest.mark.parametrize("application_type", ["desktop", "Native", "", 1, ["native"]])
def test_another_application_type_is_invalid_client_metadata(client: TestClient[Any], application_type: Any) -> None:
    response = client.post(
        "/oauth/register",
        json={
            "client_name": "Acme",
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "token_endpoint_auth_method": "none",
            "application_type": application_type,
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert "application_type" in response.json()["error_description"]
