"""Migration 0009 on SQLite and PostgreSQL: client ids become as long as a CIMD URL, and a database already in use
keeps its clients, tokens, connections and everything else that refers to them, with foreign keys still enforced.
Also: the models and the migrations describe the same schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from vouchsim.server.storage.engine import create_engine, create_sessionmaker
from vouchsim.server.storage.migrate import downgrade, migrate, upgrade
from vouchsim.server.storage.models import (
    AuthorizationCode,
    Base,
    Delegation,
    Device,
    McpSession,
    OAuthClient,
    OAuthToken,
    RuntimeConnection,
    User,
)
from vouchsim.server.storage.types import UTCDateTime

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CIMD_ID = "https://app.example.com/" + "c" * 400 + "/client-metadata.json"

# oauth_clients as revision 0004 left it (the model has columns 0004 does not).
CLIENTS_0004 = sa.table(
    "oauth_clients",
    sa.column("client_id", sa.String),
    sa.column("client_secret_hash", sa.String),
    sa.column("client_name", sa.String),
    sa.column("redirect_uris", sa.JSON),
    sa.column("grant_types", sa.JSON),
    sa.column("response_types", sa.JSON),
    sa.column("token_endpoint_auth_method", sa.String),
    sa.column("scope", sa.String),
    sa.column("provider_id", sa.String),
    sa.column("client_metadata", sa.JSON),
    sa.column("client_id_issued_at", sa.Integer),
    sa.column("created_at", UTCDateTime),
)


def _client_0004(client_id: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret_hash": None,
        "client_name": "Acme",
        "redirect_uris": ["http://127.0.0.1:3000/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "identity delegation",
        "provider_id": None,
        "client_metadata": {"client_name": "Acme"},
        "client_id_issued_at": 1,
        "created_at": NOW,
    }


def _rows(client_id: str, suffix: str) -> list[Any]:
    """A user, a device, a connection, a code, a token, a delegation and an MCP session of `client_id`."""
    later = NOW + timedelta(hours=1)
    return [
        User(id=f"usr_{suffix}", created_at=NOW),
        Device(id=f"dev_{suffix}", user_id=f"usr_{suffix}", public_key=f"pk_{suffix}", name="phone", created_at=NOW),
        RuntimeConnection(
            id=f"conn_{suffix}",
            user_id=f"usr_{suffix}",
            client_id=client_id,
            device_id=f"dev_{suffix}",
            scope="identity",
            created_at=NOW,
        ),
        AuthorizationCode(
            id=f"code_{suffix}",
            code_hash=f"ch_{suffix}",
            client_id=client_id,
            user_id=f"usr_{suffix}",
            connection_id=f"conn_{suffix}",
            redirect_uri="http://127.0.0.1:3000/cb",
            scope="identity",
            resource="https://vouch.test/mcp",
            code_challenge="c" * 43,
            code_challenge_method="S256",
            created_at=NOW,
            expires_at=later,
        ),
        OAuthToken(
            id=f"tok_{suffix}",
            grant_id=f"grant_{suffix}",
            client_id=client_id,
            user_id=f"usr_{suffix}",
            connection_id=f"conn_{suffix}",
            authorization_code_id=f"code_{suffix}",
            scope="identity",
            resource="https://vouch.test/mcp",
            access_token_hash=f"at_{suffix}",
            refresh_token_hash=f"rt_{suffix}",
            created_at=NOW,
            access_expires_at=later,
        ),
        Delegation(
            id=f"del_{suffix}",
            user_id=f"usr_{suffix}",
            client_id=client_id,
            connection_id=f"conn_{suffix}",
            audience_id="aud_test_payments",
            scopes=["payments.identity"],
            purpose="test",
            binding_message="ABCD",
            status="pending",
            created_at=NOW,
            expires_at=later,
        ),
        McpSession(
            id=f"mcp_{suffix}",
            user_id=f"usr_{suffix}",
            client_id=client_id,
            connection_id=f"conn_{suffix}",
            protocol_version="2025-06-18",
            client_info={},
            created_at=NOW,
            last_seen_at=NOW,
            expires_at=later,
        ),
    ]


async def _add(session: Any, rows: list[Any]) -> None:
    for row in rows:  # in order: parents first
        session.add(row)
        await session.flush()


def _cimd_client() -> OAuthClient:
    return OAuthClient(
        **{**_client_0004(CIMD_ID), "client_name": "CIMD client"},
        kind="cimd",
        metadata_fetched_at=NOW,
        metadata_expires_at=NOW + timedelta(minutes=5),
    )


async def test_a_database_in_use_keeps_its_data_and_takes_long_client_ids(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    sessions = create_sessionmaker(engine)
    try:
        await upgrade(engine, "0004")
        async with sessions() as session, session.begin():
            await session.execute(sa.insert(CLIENTS_0004).values(_client_0004("vsc_existing")))
            await _add(session, _rows("vsc_existing", "old"))

        await upgrade(engine)

        async with sessions() as session, session.begin():
            client = await session.get(OAuthClient, "vsc_existing")
            assert client is not None and client.kind == "registered" and client.retired_at is None
            for model, key in (
                (RuntimeConnection, "conn_old"),
                (OAuthToken, "tok_old"),
                (AuthorizationCode, "code_old"),
            ):
                row = await session.get(model, key)
                assert row is not None and row.client_id == "vsc_existing"
            assert (await session.get(Delegation, "del_old")).client_id == "vsc_existing"  # type: ignore[union-attr]
            assert (await session.get(McpSession, "mcp_old")).client_id == "vsc_existing"  # type: ignore[union-attr]
            # A 445-character CIMD id, and everything that refers to a client, referring to it.
            session.add(_cimd_client())
            await session.flush()
            await _add(session, _rows(CIMD_ID, "new"))
        async with sessions() as session, session.begin():
            token = await session.get(OAuthToken, "tok_new")
            assert token is not None and token.client_id == CIMD_ID

        # Foreign keys are still enforced after the tables were rebuilt.
        with pytest.raises(IntegrityError):
            async with sessions() as session, session.begin():
                session.add(
                    RuntimeConnection(
                        id="conn_orphan",
                        user_id="usr_old",
                        client_id="vsc_nobody",
                        device_id="dev_old",
                        scope="identity",
                        created_at=NOW,
                    )
                )

        # Back down: refused while a long id exists, then fine once it is gone, the old data still there. The later
        # revisions go first, so the refusal is 0009's own (SQLite does not undo DDL already run before a failure).
        await downgrade(engine, "0009")
        with pytest.raises(RuntimeError, match="longer than 64 characters"):
            await downgrade(engine, "0004")
        async with sessions() as session, session.begin():
            for model in (McpSession, Delegation, OAuthToken, AuthorizationCode, RuntimeConnection):
                await session.execute(sa.delete(model).where(model.client_id == CIMD_ID))
            await session.execute(sa.delete(OAuthClient).where(OAuthClient.client_id == CIMD_ID))
        await downgrade(engine, "0004")
        async with engine.connect() as connection:
            count = await connection.scalar(
                sa.text("SELECT count(*) FROM oauth_tokens WHERE client_id = 'vsc_existing'")
            )
            assert count == 1
        await upgrade(engine)
    finally:
        await engine.dispose()


async def test_the_models_and_the_migrations_describe_the_same_schema(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        await migrate(engine)  # every migration (`upgrade` would make an empty database from the models)
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
        assert differences == []
    finally:
        await engine.dispose()
