"""Server settings: one frozen struct, parsed once at the edge (CLI options over `VOUCHSIM_*` variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

DEFAULT_PORT = 8741  # not a registered service port; 8000/8080/5432 are commonly taken
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/vouchsim.db"
# Every MCP protocol version the server can speak, newest first (server.mcp.protocol says what each era means).
MCP_VERSIONS = ("2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26")
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
    # Host names the server answers for besides loopback ones, when no issuer is set (server.edge.hosts): with
    # VOUCHSIM_ISSUER unset and the server listening on loopback, any other `Host` gets 421, so a DNS-rebinding
    # page cannot make the server name the attacker's host in its metadata. Comma-separated `host` (any port) or
    # `host:port`; `*` accepts every host (the guard off).
    allowed_hosts: str = ""
    # Rate limits (server.edge.limits, docs/security.md): how many requests one client IP (one access token on
    # /mcp) may make in a burst, refilled evenly over `rate_limit_window` seconds; 0 turns that limit off. Counted
    # in process: with `--workers N` each worker counts on its own.
    rate_limit_window: int = 20
    rate_limit_registrations: int = 150  # POST /oauth/register
    rate_limit_pairings: int = 300  # authorization page starts and fresh pairing QRs
    rate_limit_pairing_codes: int = 600  # pairing codes typed into the authorization page
    rate_limit_mcp: int = 6000  # /mcp requests, per access token
    # Key the per-IP limits on the last address of `X-Forwarded-For` (what a trusted reverse proxy appends) rather
    # than on the socket's peer. Only behind a proxy that sets it: otherwise any caller chooses its own key.
    rate_limit_forwarded_for: bool = False
    # Client registration (docs/client-registration.md). Which paths a client may take besides the pre-registered
    # clients: `cimd` (Client ID Metadata Documents), `dcr` (RFC 7591 dynamic registration), both, or `none`.
    registration: str = "cimd,dcr"
    # Pre-registered clients, a JSON file (docs/client-registration.md). Empty: none.
    clients_file: str = ""
    # Hosts whose metadata documents may be fetched although they are loopback or private, for a testbed serving
    # its document itself: `127.0.0.1:9443,localhost:8443` (`host` alone: any port). Never for production.
    cimd_allow_hosts: str = ""
    # A PEM bundle of extra CAs trusted when fetching metadata documents (a test server's own certificate).
    cimd_ca_file: str = ""
    # The MCP protocol versions `/mcp` offers, comma-separated, from 2026-07-28 (stateless, `server/discover`) and
    # 2025-11-25, 2025-06-18, 2025-03-26 (the `initialize` handshake and sessions). Fewer than all four makes a
    # modern-only or a legacy-only server, to test a client's fallback against; the others are refused with the
    # errors the specification gives for unsupported versions.
    mcp_versions: str = ",".join(MCP_VERSIONS)
    log_level: str = "info"
    # Server processes sharing the port (`vouchsim serve --workers`). More than one needs PostgreSQL: waiting
    # calls are woken across processes only through LISTEN/NOTIFY.
    workers: int = 1
    # The testbed controls under /testbed/ (server/testbed/): off unless asked for. Their bearer token; empty with
    # the testbed on: `vouchsim serve` generates one and prints it once.
    testbed: bool = False
    testbed_token: str = ""
    # Entries the request journal keeps (per instance, in process); the oldest go first.
    testbed_journal_size: int = 10_000

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
        if self.rate_limit_window <= 0:
            raise ValueError("rate_limit_window must be positive")
        for name in ("rate_limit_registrations", "rate_limit_pairings", "rate_limit_pairing_codes", "rate_limit_mcp"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative (0 turns the limit off)")
        for host in self.allowed_host_list:
            if host != "*" and (problem := _allow_host_problem(host)):
                raise ValueError(f"allowed_hosts: {host!r} {problem}")
        if self.testbed_journal_size < 1:
            raise ValueError("testbed_journal_size must be at least 1")
        if not all("\x21" <= char <= "\x7e" for char in self.testbed_token):
            raise ValueError("testbed_token must be visible ASCII characters (it travels in a header)")
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
        if not self.registration_modes and self.registration.strip().lower() != "none":
            raise ValueError("registration must name cimd, dcr, both (cimd,dcr), or be none")
        for host in self.cimd_allow_host_list:
            if problem := _allow_host_problem(host):
                raise ValueError(f"cimd_allow_hosts: {host!r} {problem}")
        versions = [v.strip() for v in self.mcp_versions.split(",") if v.strip()]
        if not versions:
            raise ValueError(f"mcp_versions: name at least one of {', '.join(MCP_VERSIONS)}")
        for version in versions:
            if version not in MCP_VERSIONS:
                raise ValueError(f"mcp_versions: {version!r} is not one of {', '.join(MCP_VERSIONS)}")
        for origin in self.allowed_origin_list:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(f"allowed_origins: {origin!r} is not an origin such as https://app.example.com")

    @property
    def allowed_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip())

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @property
    def registration_modes(self) -> frozenset[str]:
        """The registration paths offered besides pre-registered clients: a subset of {"cimd", "dcr"}; empty for
        `none` (and for a value that names something else, which `__post_init__` refuses)."""
        modes = {mode.strip().lower() for mode in self.registration.split(",") if mode.strip()}
        return frozenset(modes) if modes and modes <= REGISTRATION_MODES else frozenset()

    @property
    def cimd_allow_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.cimd_allow_hosts.split(",") if h.strip())

    @property
    def mcp_version_list(self) -> tuple[str, ...]:
        """The offered MCP versions, newest first, each once."""
        named = {v.strip() for v in self.mcp_versions.split(",")}
        return tuple(version for version in MCP_VERSIONS if version in named)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _allow_host_problem(entry: str) -> str | None:
    """Why `entry` is not `host`, `host:port`, `[ipv6]` or `[ipv6]:port`, or None."""
    host, port = entry, ""
    if entry.startswith("["):
        if "]" not in entry:
            return "has an IPv6 address not closed by ']'"
        host, _, rest = entry.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            return "is not host or host:port"
        port = rest[1:]
        if rest and not port:
            return "has an empty port"
    elif ":" in entry:
        host, _, port = entry.partition(":")
        if not port:
            return "has an empty port"
    if not host or "/" in entry or "@" in entry or "://" in entry:
        return "is not host or host:port (no scheme, no path)"
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return "has a port that is not between 1 and 65535"
    return None


REGISTRATION_MODES = frozenset({"cimd", "dcr"})
ENV_PREFIX = "VOUCHSIM_"
_INT_FIELDS = {name for name, kind in Settings.__annotations__.items() if kind == "int"}
_BOOL_FIELDS = {name for name, kind in Settings.__annotations__.items() if kind == "bool"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def settings_from(environ: Mapping[str, str], **overrides: object) -> Settings:
    """Settings from `VOUCHSIM_*` variables, then explicit overrides (CLI options) that are not None."""
    values: dict[str, object] = {}
    for field in Settings.__struct_fields__:
        raw = environ.get(ENV_PREFIX + field.upper())
        if raw is None or raw == "":
            continue
        if field in _BOOL_FIELDS:
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ValueError(f"{ENV_PREFIX}{field.upper()} must be 1 or 0 (true or false), got {raw!r}")
            values[field] = raw.strip().lower() in _TRUE
        elif field in _INT_FIELDS:
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
    return {ENV_PREFIX + field.upper(): _env_value(getattr(settings, field)) for field in Settings.__struct_fields__}


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
