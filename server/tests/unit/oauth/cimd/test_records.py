"""A CIMD client's row: inserted at the first fetch, refreshed in place later, never over a pre-registered or a
dynamically registered client; two requests storing the same document at once both succeed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.oauth.cimd.document import ResolvedMetadata, validate_document
from vouchsim.server.oauth.cimd.records import remember
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories.clients import ClientRepository

pytestmark = pytest.mark.anyio

URL = "https://app.example.com/oauth/" + "m" * 300 + ".json"


def resolved(clock: FrozenClock, **fields: Any) -> ResolvedMetadata:
    body = {"client_id": URL, "client_name": "Example", "redirect_uris": ["http://127.0.0.1:3000/cb"], **fields}
    now = clock.now()
    return ResolvedMetadata(
        metadata=validate_document(URL, body), fetched_at=now, expires_at=now + timedelta(seconds=600)
    )


async def test_a_document_client_is_stored_then_refreshed_in_place(engine: Any, clock: FrozenClock) -> None:
    sessions = create_sessionmaker(engine)
    first_fetch = clock.now()
    async with sessions() as session, session.begin():
        assert await remember(ClientRepository(session), resolved(clock, logo_uri="https://app.example.com/l.png"))
    clock.advance(3600)
    async with sessions() as session, session.begin():
        assert await remember(ClientRepository(session), resolved(clock, client_name="Renamed", scope="identity"))
    async with sessions() as session:
        row = await ClientRepository(session).get(URL)
    assert row is not None
    assert (row.kind, row.client_name, row.scope, row.token_endpoint_auth_method) == (
        "cimd",
        "Renamed",
        "identity",
        "none",
    )
    assert row.client_secret_hash is None
    assert row.client_metadata["client_name"] == "Renamed" and "logo_uri" not in row.client_metadata
    assert row.metadata_fetched_at == clock.now() and row.metadata_expires_at == clock.now() + timedelta(seconds=600)
    assert row.created_at == first_fetch  # who first had the id, and when, is kept
    assert row.client_id_issued_at == int(first_fetch.timestamp())


async def test_a_document_never_overwrites_a_client_of_another_kind(engine: Any, clock: FrozenClock) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add(
            OAuthClient(
                client_id=URL,
                client_name="Pre-registered",
                redirect_uris=["https://app.example.com/cb"],
                grant_types=["authorization_code"],
                response_types=["code"],
                token_endpoint_auth_method="none",
                scope="identity",
                client_metadata={},
                client_id_issued_at=0,
                created_at=clock.now(),
                kind="preregistered",
            )
        )
    async with sessions() as session, session.begin():
        assert not await remember(ClientRepository(session), resolved(clock))
    async with sessions() as session:
        row = await ClientRepository(session).get(URL)
    assert row is not None and (row.kind, row.client_name) == ("preregistered", "Pre-registered")


async def test_two_requests_storing_the_same_new_document_both_succeed(engine: Any, clock: FrozenClock) -> None:
    sessions = create_sessionmaker(engine)
    stored: list[bool] = []

    async def store() -> None:
        async with sessions() as session, session.begin():
            stored.append(await remember(ClientRepository(session), resolved(clock)))

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(store)
    assert stored == [True, True, True, True]
