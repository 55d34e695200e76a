"""Companion settings: one frozen struct, parsed once at the edge (options over `VOUCHSIM_*` variables)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

DEFAULT_STATE_DIR = Path("var/companion")
DEFAULT_SERVER_URL = "http://127.0.0.1:8741"
STATE_ENV = "VOUCHSIM_COMPANION_STATE"
SERVER_ENV = "VOUCHSIM_SERVER_URL"
TESTBED_TOKEN_ENV = "VOUCHSIM_TESTBED_TOKEN"  # noqa: S105 - the variable's name


class ConfigError(ValueError):
    """An option or variable with a value the companion cannot use (a usage error)."""


class CompanionConfig(msgspec.Struct, frozen=True, kw_only=True):
    state_dir: Path = DEFAULT_STATE_DIR
    # None: nobody chose one; commands then use the enrolled server, and `enrol` uses DEFAULT_SERVER_URL.
    server_url: str | None = None
    timeout: float = 10.0
    # The server's testbed token (`vouchsim serve --testbed`): with it the TUI shows the Timeline.
    testbed_token: str | None = None

    def server_for(self, enrolled_server_url: str | None) -> str:
        """The server to talk to: the one chosen explicitly, else the enrolled one, else the default."""
        return self.server_url or enrolled_server_url or DEFAULT_SERVER_URL


def normalize_server_url(url: str) -> str:
    """An absolute http(s) URL without a trailing slash; raises ConfigError otherwise."""
    cleaned = url.strip().rstrip("/")
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"server URL must be an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"server URL must not carry a query or fragment, got {url!r}")
    return cleaned


def load_config(
    environ: Mapping[str, str],
    *,
    state_dir: str | None = None,
    server_url: str | None = None,
    testbed_token: str | None = None,
) -> CompanionConfig:
    """Options win over variables, variables over defaults; empty values count as unset."""
    state = state_dir or environ.get(STATE_ENV) or None
    server = server_url or environ.get(SERVER_ENV) or None
    token = (testbed_token or environ.get(TESTBED_TOKEN_ENV) or "").strip() or None
    return CompanionConfig(
        state_dir=Path(state) if state else DEFAULT_STATE_DIR,
        server_url=normalize_server_url(server) if server else None,
        testbed_token=token,
    )
