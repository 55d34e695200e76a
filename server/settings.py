"""Server settings: one frozen struct, parsed once at the edge (CLI options over `VOUCHSIM_*` variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

DEFAULT_PORT = 8741  # not a registered service port; 8000/8080/5432 are commonly taken
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/vouchsim.db"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Public base URL, e.g. https://vouch.example.com. Empty: derived per request from the Host header
    # (and X-Forwarded-Proto), which suits loopback use and tests.
    issuer: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database_url: str = DEFAULT_DATABASE_URL
    # HMAC key for CSRF tokens, pairing codes and pairwise subjects. Empty: generated on first start and
    # kept in the database, so every instance of one deployment shares it.
    secret_key: str = ""
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    authorization_code_ttl: int = 60
    authorization_request_ttl: int = 900
    pairing_ttl: int = 300
    pairing_code_ttl: int = 180
    pairing_max_attempts: int = 5
    refresh_grace: int = 30
    browser_session_ttl: int = 7 * 24 * 3600
    device_clock_skew: int = 120
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.issuer.endswith("/"):
            raise ValueError("issuer must not end with '/'")
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "authorization_code_ttl",
            "authorization_request_ttl",
            "pairing_ttl",
            "pairing_code_ttl",
            "browser_session_ttl",
            "device_clock_skew",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.pairing_max_attempts < 1:
            raise ValueError("pairing_max_attempts must be at least 1")
        if self.refresh_grace < 0:
            raise ValueError("refresh_grace must not be negative")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


ENV_PREFIX = "VOUCHSIM_"
_INT_FIELDS = {name for name, kind in Settings.__annotations__.items() if kind == "int"}


def settings_from(environ: Mapping[str, str], **overrides: object) -> Settings:
    """Settings from `VOUCHSIM_*` variables, then explicit overrides (CLI options) that are not None."""
    values: dict[str, object] = {}
    for field in Settings.__struct_fields__:
        raw = environ.get(ENV_PREFIX + field.upper())
        if raw is None or raw == "":
            continue
        if field in _INT_FIELDS:
            try:
                values[field] = int(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{field.upper()} must be an integer, got {raw!r}") from None
        else:
            values[field] = raw
    values.update({key: value for key, value in overrides.items() if value is not None})
    if isinstance(values.get("issuer"), str):
        values["issuer"] = str(values["issuer"]).rstrip("/")
    return Settings(**values)  # type: ignore[arg-type]


def settings_from_environment(**overrides: object) -> Settings:
    return settings_from(os.environ, **overrides)
