"""The schema. Secrets appear only as `*_hash` columns (SHA-256 or HMAC-SHA-256 hex digests).

Changing a model means a new Alembic migration in `server/storage/migrations/versions/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vouchsim.server.storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class ServerKey(Base):
    """Server-wide keys generated on first start (HMAC key), shared by every instance."""

    __tablename__ = "server_keys"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]


class Device(Base):
    """A user's trusted device: an Ed25519 public key that signs every device request."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DeviceNonce(Base):
    """Nonces seen in signed device requests, kept until their timestamp window has passed."""

    __tablename__ = "device_nonces"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# Long enough for a Client ID Metadata Document URL (server.oauth.cimd.urls.MAX_LENGTH).
CLIENT_ID = String(512)


class OAuthClient(Base):
    """An OAuth client. `kind` says where it came from:

    - `registered`: RFC 7591 dynamic registration. Append-only: registrations are never silently dropped.
    - `cimd`: a Client ID Metadata Document; the row is the last validated copy, refreshed in place at each fetch
      (`metadata_fetched_at`, `metadata_expires_at`), so codes, tokens and connections have a client to refer to.
    - `preregistered`: from `VOUCHSIM_CLIENTS_FILE`, refreshed in place at each start; `retired_at` is set when it
      is no longer in the file.
    """

    __tablename__ = "oauth_clients"
    client_id: Mapped[str] = mapped_column(CLIENT_ID, primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_name: Mapped[str | None] = mapped_column(String(256))
    redirect_uris: Mapped[list[str]]
    grant_types: Mapped[list[str]]
    response_types: Mapped[list[str]]
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(512))
    provider_id: Mapped[str | None] = mapped_column(String(128))
    # Every registered metadata field as echoed back in the registration response.
    client_metadata: Mapped[dict[str, Any]]
    client_id_issued_at: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16), default="registered", server_default="registered")
    metadata_fetched_at: Mapped[datetime | None]
    metadata_expires_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]


class BrowserSession(Base):
    """A browser seen at the authorization page; signed in (user_id set) once a pairing completed in it."""

    __tablename__ = "browser_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    created_at: Mapped[datetime]
    signed_in_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class AuthorizationRequest(Base):
    """A validated `/oauth/authorize` request, held while the person pairs or consents in that browser."""

    __tablename__ = "authorization_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_session_id: Mapped[str] = mapped_column(ForeignKey("browser_sessions.id"), index=True)
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(512))
    state: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class PairingSession(Base):
    """The QR pairing of one authorization request; see `server.pairing.states` for its state machine."""

    __tablename__ = "pairing_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    authorization_request_id: Mapped[str] = mapped_column(ForeignKey("authorization_requests.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_expires_at: Mapped[datetime | None]
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class RuntimeConnection(Base):
    """A paired client: the user allowed this OAuth client, through this trusted device, to act as runtime."""

    __tablename__ = "runtime_connections"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    scope: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("runtime_connections.id"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(512))
    resource: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OAuthToken(Base):
    """One access token and (usually) its refresh token. `grant_id` ties a rotation family together."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (Index("ix_oauth_tokens_grant_id", "grant_id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("runtime_connections.id"), index=True)
    authorization_code_id: Mapped[str | None] = mapped_column(ForeignKey("authorization_codes.id"), index=True)
    scope: Mapped[str] = mapped_column(String(512))
    resource: Mapped[str] = mapped_column(Text)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Set when this token's refresh token was exchanged for `replaced_by_id`.
    rotated_at: Mapped[datetime | None]
    replaced_by_id: Mapped[str | None] = mapped_column(String(64))
    # The successor pair, AES-GCM sealed under a key derived from this token's own refresh token, so a racing
    # client that re-presents it within the grace window gets the same pair back, and nobody else can read it.
    successor_sealed: Mapped[str | None] = mapped_column(Text)


class SigningKey(Base):
    """A key that signs delegation tokens. The newest unretired one signs; every unexpired one is published."""

    __tablename__ = "signing_keys"
    # One current (unretired) key per algorithm: two instances making the first key at once, or rotating at once,
    # cannot both succeed (`server.delegation.tokens`).
    __table_args__ = (
        Index(
            "uq_signing_keys_current_algorithm",
            "algorithm",
            unique=True,
            postgresql_where=text("retired_at IS NULL"),
            sqlite_where=text("retired_at IS NULL"),
        ),
    )
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]]
    # The private JWK, AES-GCM sealed under a key derived from the server's HMAC key.
    private_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # Set when a newer key took over signing; the public key stays published until `publish_until`.
    retired_at: Mapped[datetime | None]
    publish_until: Mapped[datetime | None]


class Delegation(Base):
    """A delegation asked for by an agent and decided on a trusted device; see `server.delegation.states`."""

    __tablename__ = "delegations"
    __table_args__ = (
        Index("ix_delegations_user_status", "user_id", "status"),
        # The device's lists read a user's newest delegations first.
        Index("ix_delegations_user_created", "user_id", "created_at"),
        # Every decision checks that its device never signed with this nonce before.
        Index("ix_delegations_device_nonce", "device_id", "decision_nonce"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("runtime_connections.id"), index=True)
    audience_id: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]]
    purpose: Mapped[str] = mapped_column(Text)
    binding_message: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    # Evidence of the decision: the statement the device signed, its nonce and signature.
    decision_statement: Mapped[str | None] = mapped_column(Text)
    decision_nonce: Mapped[str | None] = mapped_column(String(128))
    decision_signature: Mapped[str | None] = mapped_column(String(128))
    token_jti: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class McpSession(Base):
    """A Streamable HTTP session (`Mcp-Session-Id`), bound to the user and client of the token that opened it."""

    __tablename__ = "mcp_sessions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("runtime_connections.id"), index=True)
    protocol_version: Mapped[str] = mapped_column(String(16))
    client_info: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class TestbedState(Base):
    """What the testbed controls (server/testbed/) keep for every instance of a deployment: the clock offset.
    One row per setting, read at start and again whenever a change is announced on the event bus."""

    __tablename__ = "testbed_state"
    __test__ = False  # not a pytest test class, whatever its name
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class TestbedFault(Base):
    """An injected fault (`POST /testbed/faults`). `remaining` is None for a fault that fires until deleted;
    firing decrements it with a compare-and-swap, so `times: N` fires N times across every instance."""

    __tablename__ = "testbed_faults"
    __test__ = False
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    match: Mapped[dict[str, Any]]
    action: Mapped[dict[str, Any]]
    times: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    # Real time (not the testbed clock), so faults keep their order whatever the clock does.
    created_at: Mapped[datetime]


class McpTask(Base):
    """A task of the MCP Tasks extension (2026-07-28): a `delegation_request` answered at once and polled with
    `tasks/get`. Only the SHA-256 of the task id is stored; the task is bound to the user, client and runtime
    connection of the token that created it. Once terminal it never changes: the tool result it froze is kept
    sealed (AES-GCM under the server key: it may hold a delegation token) until `expires_at`."""

    __tablename__ = "mcp_tasks"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str] = mapped_column(CLIENT_ID, ForeignKey("oauth_clients.client_id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("runtime_connections.id"), index=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    result_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    last_updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]
