"""Vouchsim for other projects' tests: a live server, a trusted device, and the person at the authorization
page, all headless. `companion.testing.pytest_plugin` turns them into pytest fixtures (registered by entry
point as `vouchsim`). Nothing here imports the server: it runs as a subprocess and is reached over HTTP."""

from __future__ import annotations

from vouchsim.companion.testing.browser import AuthorizationPage, AuthorizationPageError
from vouchsim.companion.testing.device import TrustedDevice
from vouchsim.companion.testing.server import ServerStartError, VouchsimServer

__all__ = ["AuthorizationPage", "AuthorizationPageError", "ServerStartError", "TrustedDevice", "VouchsimServer"]
