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
