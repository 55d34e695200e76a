"""`VOUCHSIM_CLIENTS_FILE`: its format is checked at start with a one-line error naming the file and the problem,
and its clients are written into the database at each start (refreshed in place, retired once gone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.oauth.preregistered import ClientsFileError, PreregisteredClients
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories.clients import ClientRepository

EXAMPLE = Path(__file__).resolve().parents[4] / "fixtures" / "clients.example.json"
PUBLIC = {"client_id": "acme-agent", "client_name": "ACME agent", "redirect_uris": ["http://127.0.0.1:3000/cb"]}
CONFIDENTIAL = {
    "client_id": "acme-backend",
    "client_name": "ACME backend",
    "redirect_uris": ["https://acme.example/cb"],
    "token_endpoint_auth_method": "client_secret_basic",
    "client_secret": "correct-horse-battery-staple",
    "scope": "identity",
    "application_type": "web",
}


def write(tmp_path: Path, clients: list[dict[str, Any]] | Any, name: str = "clients.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"clients": clients} if isinstance(clients, list) else clients))
    return path


def test_the_example_file_is_valid() -> None:
    clients = PreregisteredClients.load(EXAMPLE)
    assert len(clients) >= 2
    assert any(client.token_endpoint_auth_method == "none" for client in clients)


def test_a_file_is_loaded_with_defaults(tmp_path: Path) -> None:
    clients = PreregisteredClients.from_settings(Settings(clients_file=str(write(tmp_path, [PUBLIC, CONFIDENTIAL]))))
    public = clients.get("acme-agent")
    assert public is not None
    assert public.token_endpoint_auth_method == "none" and public.client_secret is None
    assert public.grant_types == ("authorization_code", "refresh_token")
    assert public.scope == "identity delegation"
    assert "client_secret" not in clients.get("acme-backend").public_metadata()  # type: ignore[union-attr]
    assert len(PreregisteredClients.from_settings(Settings())) == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "malformed"),
        ({"client": []}, "unknown field `client`"),
        ({}, "missing required field `clients`"),
        ([{**PUBLIC, "colour": "red"}], "unknown field `colour`"),
        ([{**PUBLIC, "client_id": "vsc_0123"}], "client_id"),
        ([{**PUBLIC, "client_id": "has space"}], "client_id"),
        ([{**PUBLIC, "client_id": "http://app.example.com/c"}], "https://"),
        ([{**PUBLIC, "client_id": "https://app.example.com/"}], "not / alone"),
        ([{**PUBLIC, "redirect_uris": []}], "redirect_uris"),
        ([{**PUBLIC, "redirect_uris": ["http://evil.example/cb"]}], "must use https"),
        ([{**PUBLIC, "client_name": "A\u202eB"}], "bidirectional"),
        ([{**PUBLIC, "token_endpoint_auth_method": "private_key_jwt"}], "token_endpoint_auth_method"),
        ([{**PUBLIC, "client_secret": "a-secret-of-enough-length"}], "public client has no secret"),
        ([{**CONFIDENTIAL, "client_secret": None}], "needs a client_secret"),
        ([{**CONFIDENTIAL, "client_secret": "short"}], "at least 16 characters"),
        ([{**PUBLIC, "grant_types": ["client_credentials"]}], "unsupported grant_types"),
        ([{**PUBLIC, "grant_types": ["refresh_token"]}], "include authorization_code"),
        ([{**PUBLIC, "response_types": ["token"]}], "response_types"),
        ([{**PUBLIC, "scope": "identity admin"}], "unsupported scope: admin"),
        ([{**PUBLIC, "application_type": "desktop"}], "application_type"),
        ([PUBLIC, PUBLIC], "listed twice"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_problem(tmp_path: Path, content: Any, problem: str) -> None:
    path = tmp_path / "clients.json"
    path.write_text(
        content
        if isinstance(content, str)
        else json.dumps({"clients": content} if isinstance(content, list) else content)
    )
    with pytest.raises(ClientsFileError) as refused:
        PreregisteredClients.load(path)
    message = str(refused.value)
    assert message.startswith(f"the clients file {path} is not valid: ")
    assert problem in message and "\n" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClientsFileError, match=r"cannot read the clients file .*nope\.json: No such file"):
        PreregisteredClients.load(tmp_path / "nope.json")


@pytest.mark.anyio
async def test_seeding_writes_refreshes_and_retires(engine: Any, tmp_path: Path, clock: FrozenClock) -> None:
    sessions = create_sessionmaker(engine)
    url_client = {**PUBLIC, "client_id": "https://app.example.com/client.json", "client_name": "Pinned CIMD URL"}
    async with sessions() as session, session.begin():  # that URL was a CIMD client before it was pinned
        session.add(OAuthClient(**_row(url_client["client_id"], "cimd", clock)))
    first = PreregisteredClients.load(write(tmp_path, [PUBLIC, CONFIDENTIAL, url_client]))
    async with sessions() as session, session.begin():
        assert await first.seed(ClientRepository(session), clock.now()) == []
    async with sessions() as session:
        repository = ClientRepository(session)
        backend = await repository.get("acme-backend")
        pinned = await repository.get(url_client["client_id"])
    assert backend is not None and backend.kind == "preregistered"
    assert backend.client_secret_hash == hash_secret("correct-horse-battery-staple")
    assert backend.token_endpoint_auth_method == "client_secret_basic" and backend.scope == "identity"
    assert backend.client_metadata["application_type"] == "web" and "client_secret" not in backend.client_metadata
    assert pinned is not None and (pinned.kind, pinned.client_name) == ("preregistered", "Pinned CIMD URL")

    clock.advance(60)
    second = PreregisteredClients.load(write(tmp_path, [{**PUBLIC, "client_name": "ACME agent 2"}], "second.json"))
    async with sessions() as session, session.begin():
        retired = await second.seed(ClientRepository(session), clock.now())
    assert sorted(retired) == sorted(["acme-backend", url_client["client_id"]])
    async with sessions() as session:
        repository = ClientRepository(session)
        agent = await repository.get("acme-agent")
        backend = await repository.get("acme-backend")
    assert agent is not None and agent.client_name == "ACME agent 2" and agent.retired_at is None
    assert backend is not None and backend.retired_at == clock.now()

    # Back in the file: no longer retired.
    async with sessions() as session, session.begin():
        await first.seed(ClientRepository(session), clock.now())
        assert (await ClientRepository(session).get("acme-backend")).retired_at is None  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_dynamically_registered_id_is_never_taken_over(engine: Any, tmp_path: Path, clock: FrozenClock) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add(OAuthClient(**_row("acme-agent", "registered", clock)))
    clients = PreregisteredClients.load(write(tmp_path, [PUBLIC]))
    with pytest.raises(ClientsFileError, match="dynamically registered"):
        async with sessions() as session, session.begin():
            await clients.seed(ClientRepository(session), clock.now())


def _row(client_id: str, kind: str, clock: FrozenClock) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_name": "Before",
        "redirect_uris": ["https://app.example.com/cb"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "identity",
        "client_metadata": {},
        "client_id_issued_at": 0,
        "created_at": clock.now(),
        "kind": kind,
    }
