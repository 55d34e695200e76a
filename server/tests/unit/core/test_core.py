from __future__ import annotations

import pytest

from vouchsim.server.core import crypto
from vouchsim.server.core.issuer import derive_issuer
from vouchsim.server.oauth.bearer import InvalidToken, bearer_token, challenge
from vouchsim.server.settings import Settings, settings_environment, settings_from


def test_issuer_configured_wins() -> None:
    assert derive_issuer("https://vouch.example", scheme="http", host="x", forwarded_proto="http") == (
        "https://vouch.example"
    )


def test_issuer_from_request() -> None:
    assert derive_issuer("", scheme="http", host="127.0.0.1:8741", forwarded_proto=None) == "http://127.0.0.1:8741"
    assert derive_issuer("", scheme="http", host="a.example", forwarded_proto="https, http") == "https://a.example"
    assert derive_issuer("", scheme="http", host="a.example", forwarded_proto="gopher") == "http://a.example"
    # A Host header that is not a host falls back rather than being echoed into metadata.
    assert derive_issuer("", scheme="http", host="a.example/evil?x", forwarded_proto=None) == "http://localhost"


def test_settings_from_environment_and_overrides() -> None:
    settings = settings_from({"VOUCHSIM_PORT": "9001", "VOUCHSIM_ISSUER": "https://v.example/"}, host="0.0.0.0")
    assert settings.port == 9001 and settings.issuer == "https://v.example" and settings.host == "0.0.0.0"
    with pytest.raises(ValueError, match="VOUCHSIM_PORT"):
        settings_from({"VOUCHSIM_PORT": "eighty"})
    with pytest.raises(ValueError, match="pairing_ttl"):
        Settings(pairing_ttl=0)


def test_settings_travel_to_worker_processes_unchanged() -> None:
    """`vouchsim serve --workers` hands each worker its settings as VOUCHSIM_* variables."""
    settings = Settings(
        issuer="https://v.example",
        port=9001,
        database_url="postgresql+asyncpg://db.example/vouchsim",
        access_token_ttl=7,
        allowed_origins="https://a.example,https://b.example",
        workers=3,
    )
    assert settings_from(settings_environment(settings)) == settings
    assert settings_from(settings_environment(Settings())) == Settings()


def test_more_than_one_worker_needs_postgres() -> None:
    with pytest.raises(ValueError, match="more than one needs PostgreSQL"):
        Settings(workers=2)
    with pytest.raises(ValueError, match="at least 1"):
        Settings(workers=0, database_url="postgresql+asyncpg://db.example/vouchsim")


def test_seal_opens_only_with_the_same_secret() -> None:
    sealed = crypto.seal("secret-a", "p", b"payload")
    assert crypto.unseal("secret-a", "p", sealed) == b"payload"
    assert crypto.unseal("secret-b", "p", sealed) is None
    assert crypto.unseal("secret-a", "other-purpose", sealed) is None


def test_hashes_and_comparison() -> None:
    assert crypto.hash_secret("x") != "x" and len(crypto.hash_secret("x")) == 64
    assert crypto.keyed_hash(b"k1", "x") != crypto.keyed_hash(b"k2", "x")
    assert crypto.constant_time_equals("abc", "abc") and not crypto.constant_time_equals("abc", "abd")
    assert len(crypto.random_token(32)) >= 43


def test_bearer_parsing_and_challenge() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    plain = challenge("https://v/.well-known/oauth-protected-resource/mcp", "identity delegation")
    assert plain == (
        'Bearer resource_metadata="https://v/.well-known/oauth-protected-resource/mcp", scope="identity delegation"'
    )
    bad = challenge("https://v/m", "identity", InvalidToken('The token "x" is bad.'))
    assert bad.startswith('Bearer error="invalid_token", error_description="The token \\"x\\" is bad."')
