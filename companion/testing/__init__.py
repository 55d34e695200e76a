"""Vouchsim for other projects' tests: a live server, a trusted device, and the person at the authorization
page, all headless, plus an OAuth client with PKCE (`oauth`) and the server's testbed controls (`testbed`).
`companion.testing.pytest_plugin` turns them into pytest fixtures (registered by entry point as `vouchsim`).
Nothing here imports the server (it runs as a subprocess and is reached over HTTP), nor the demo:
the test kit stands on the companion's core and `companion.server_process`, as the demo does."""

from __future__ import annotations

from vouchsim.companion.core.authorization import AuthorizationPage, AuthorizationPageError
from vouchsim.companion.testing.device import TrustedDevice
from vouchsim.companion.testing.oauth import AuthorizationRequest, OAuthClient, OAuthError, TokenSet
from vouchsim.companion.testing.server import ServerStartError, VouchsimServer
from vouchsim.companion.testing.testbed import Testbed

__all__ = [
    "AuthorizationPage",
    "AuthorizationPageError",
    "AuthorizationRequest",
    "OAuthClient",
    "OAuthError",
    "ServerStartError",
    "Testbed",
    "TokenSet",
    "TrustedDevice",
    "VouchsimServer",
]
