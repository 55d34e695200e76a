"""Vouchsim for other projects' tests: a live server, a trusted device, and the person at the authorization
page, all headless, plus an OAuth client with PKCE (`oauth`) and the server's testbed controls (`testbed`).
`companion.testing.pytest_plugin` turns them into pytest fixtures (registered by entry point as `vouchsim`).
Nothing here imports the server (it runs as a subprocess and is reached over HTTP), nor the demo:
the test kit stands on the companion's core and `companion.server_process`, as the demo does."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vouchsim.companion.core.authorization import AuthorizationPage, AuthorizationPageError
    from vouchsim.companion.testing.device import TrustedDevice
    from vouchsim.companion.testing.oauth import AuthorizationRequest, OAuthClient, OAuthError, TokenSet
    from vouchsim.companion.testing.server import ServerStartError, VouchsimServer
    from vouchsim.companion.testing.testbed import Testbed

# Each name is imported on first use (PEP 562): pytest imports this package for the plugin in every test run of a
# project that installed Vouchsim, and the kit's modules (httpx, the authorization page's parser) took 0.3 s of it.
_HOMES = {
    "AuthorizationPage": "vouchsim.companion.core.authorization",
    "AuthorizationPageError": "vouchsim.companion.core.authorization",
    "AuthorizationRequest": "vouchsim.companion.testing.oauth",
    "OAuthClient": "vouchsim.companion.testing.oauth",
    "OAuthError": "vouchsim.companion.testing.oauth",
    "ServerStartError": "vouchsim.companion.testing.server",
    "Testbed": "vouchsim.companion.testing.testbed",
    "TokenSet": "vouchsim.companion.testing.oauth",
    "TrustedDevice": "vouchsim.companion.testing.device",
    "VouchsimServer": "vouchsim.companion.testing.server",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
