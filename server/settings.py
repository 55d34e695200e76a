"""Server settings: one frozen struct, parsed once at the edge (CLI options over `VOUCHSIM_*` variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

DEFAULT_PORT = 8741  # not a registered service port; 8000/8080/5432 are commonly taken
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/vouchsim.db"
# The SQLAlchemy dialect+driver pairs the server runs on (async drivers it depends on).
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
# The one format of the server's own log lines (its command line and the app, Alembic included); uvicorn's access log
# keeps its own, which tools parse.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


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
    # Delegations (docs/delegations.md): how long one waits for a decision, and the delegation token's lifetime.
    delegation_ttl: int = 300
    delegation_token_ttl: int = 600
    # The audience registry, a JSON file (fixtures/README.md). Empty: fixtures/audiences.json (or the wheel's copy).
    audiences_file: str = ""
    # An MCP session (`Mcp-Session-Id`) ends after this many seconds without a request.
    mcp_session_ttl: int = 3600
    # Browser origins allowed to call `/mcp` besides the issuer's own and loopback ones, comma-separated
    # (`https://inspector.example.com,https://app.example.com`); any other `Origin` is refused (DNS rebinding).
    allowed_origins: str = ""
    log_level: str = "info"
    # Server processes sharing the port (`vouchsim serve --workers`). More than one needs PostgreSQL: waiting
    # calls are woken across processes only through LISTEN/NOTIFY.
    workers: int = 1

    def __post_init__(self) -> None:
        if self.issuer.endswith("/"):
            raise ValueError("issuer must not end with '/'")
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        scheme, separator, _ = self.database_url.partition("://")
        if not separator or scheme not in DATABASE_SCHEMES:
            shown = scheme if separator else "no scheme"  # never the rest: it may hold a password
            raise ValueError(
                f"database_url: {shown!r} is not a database this server runs on; use "
                "sqlite+aiosqlite:///path/to/vouchsim.db or postgresql+asyncpg://user@host:5432/database"
            )
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "authorization_code_ttl",
            "authorization_request_ttl",
            "pairing_ttl",
            "pairing_code_ttl",
            "browser_session_ttl",
            "device_clock_skew",
            "delegation_ttl",
            "delegation_token_ttl",
            "mcp_session_ttl",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.workers > 1 and self.is_sqlite:
            raise ValueError(
                "workers: more than one needs PostgreSQL (on SQLite a decision taken in one process would not wake "
                "the call waiting for it in another)"
            )
        if self.pairing_max_attempts < 1:
            raise ValueError("pairing_max_attempts must be at least 1")
        if self.refresh_grace < 0:
            raise ValueError("refresh_grace must not be negative")
        for origin in self.allowed_origin_list:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(f"allowed_origins: {origin!r} is not an origin such as https://app.example.com")

    @property
    def allowed_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip())

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


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as `VOUCHSIM_*` variables, which `settings_from` reads back as the same settings (what a
    worker process is started with)."""
    return {ENV_PREFIX + field.upper(): str(getattr(settings, field)) for field in Settings.__struct_fields__}
