"""What a client is granted (RFC 6749 §3.3; issue 9, finding 5): unknown scopes dropped, unregistered ones refused."""

from __future__ import annotations

import pytest
from authlib.oauth2.rfc6749 import InvalidScopeError

from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.views import ClientView


def _client(scope: str) -> ClientView:
    return ClientView(
        client_id="vsc_x",
        client_name="X",
        client_secret_hash=None,
        redirect_uris=("http://127.0.0.1/cb",),
        grant_types=("authorization_code", "refresh_token"),
        response_types=("code",),
        token_endpoint_auth_method="none",
        scope=scope,
    )


@pytest.mark.parametrize(
    ("registered", "asked", "granted"),
    [
        ("identity delegation", "identity claudeai", "identity"),
        ("identity delegation", "claudeai", "identity delegation"),  # nothing known: the registered scope
        ("identity delegation", None, "identity delegation"),
        ("identity delegation", "", "identity delegation"),
        ("identity delegation", "delegation identity", "delegation identity"),
        ("identity", "identity offline_access", "identity offline_access"),  # offline_access always accepted
        ("identity", "identity admin mcp:*", "identity"),
    ],
)
def test_granted_scope(registered: str, asked: str | None, granted: str) -> None:
    assert _client(registered).get_allowed_scope(asked) == granted


def test_a_known_scope_the_client_did_not_register_is_invalid_scope_not_narrowed() -> None:
    with pytest.raises(InvalidScopeError) as refused:
        _client("identity").get_allowed_scope("identity delegation")
    assert "delegation" in (refused.value.description or "")


def test_known_drops_what_this_server_does_not_offer() -> None:
    assert scopes.known("claudeai identity offline_access identity x") == ["identity", "offline_access"]
    assert scopes.known(None) == []
