from __future__ import annotations

import pytest
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError

from vouchsim.server.oauth.registration import prepare_metadata


def test_defaults() -> None:
    data = prepare_metadata({"redirect_uris": ["https://a.example/cb"]})
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["grant_types"] == ["authorization_code", "refresh_token"]
    assert data["response_types"] == ["code"]
    assert data["scope"] == "identity delegation"


def test_redirect_problems_are_invalid_redirect_uri() -> None:
    with pytest.raises(InvalidRedirectURIError):
        prepare_metadata({"redirect_uris": ["http://a.example/cb"]})


def test_type_errors_are_invalid_client_metadata() -> None:
    with pytest.raises(InvalidClientMetadataError):
        prepare_metadata({"redirect_uris": ["https://a.example/cb"], "grant_types": "authorization_code"})


# -- issue 9, finding 4 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/cb\r\n",
        "http://127.0.0.1/cb\n",
        "http://127.0.0.1/c\x00b",
        "http://127.0.0.1/c\x85b",  # C1 NEL
        "HTTP://127.0.0.1/cb",
        "http://evil.example\\@127.0.0.1/cb",
    ],
)
def test_control_characters_and_upper_case_schemes_in_redirect_uris_are_refused(uri: str) -> None:
    with pytest.raises(InvalidRedirectURIError):
        prepare_metadata({"redirect_uris": [uri]})


def test_at_most_twenty_redirect_uris() -> None:
    assert prepare_metadata({"redirect_uris": [f"https://a.example/{i}" for i in range(20)]})
    with pytest.raises(InvalidRedirectURIError, match="at most 20"):
        prepare_metadata({"redirect_uris": [f"https://a.example/{i}" for i in range(21)]})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_name", "Acme\u202e"),
        ("client_name", "Acme\u2067x"),
        ("client_name", "Acme\x07"),
        ("client_name", "x" * 257),
        ("scope", "identity\x00"),
        ("scope", 'identity "quoted"'),
        ("software_id", "\x1b[31m"),
        ("provider_id", "p" * 129),
        ("tos_uri", "https://a.example/" + "t" * 2000),
        ("contacts", ["ok@example.com", "bad\r\n@example.com"]),
        ("contacts", ["c@example.com"] * 11),
    ],
)
def test_field_problems_are_invalid_client_metadata(field: str, value: object) -> None:
    with pytest.raises(InvalidClientMetadataError):
        prepare_metadata({"redirect_uris": ["https://a.example/cb"], field: value})


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("identity claudeai", "identity"),
        ("claudeai", "identity delegation"),
        ("delegation mcp:tools identity identity", "delegation identity"),
        ("", "identity delegation"),
    ],
)
def test_unknown_scopes_are_dropped(asked: str, kept: str) -> None:
    assert prepare_metadata({"redirect_uris": ["https://a.example/cb"], "scope": asked})["scope"] == kept


def test_the_client_name_is_trimmed() -> None:
    assert (
        prepare_metadata({"redirect_uris": ["https://a.example/cb"], "client_name": " Acme "})["client_name"] == "Acme"
    )
