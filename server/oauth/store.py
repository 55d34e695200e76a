"""The authorization server's records, as Authlib's callbacks need them (async; runs on the event loop)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import hash_secret, new_id, seal, unseal
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.views import ClientView, CodeView, TokenView
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import AuthorizationCode, OAuthClient, OAuthToken
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.repositories.tokens import TokenRepository

GRACE_PURPOSE = "refresh-grace"


def client_view(row: OAuthClient) -> ClientView:
    return ClientView(
        client_id=row.client_id,
        client_name=row.client_name,
        client_secret_hash=row.client_secret_hash,
        redirect_uris=tuple(row.redirect_uris),
        grant_types=tuple(row.grant_types),
        response_types=tuple(row.response_types),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        scope=row.scope,
    )


def _token_view(row: OAuthToken, presented: str, now: datetime) -> TokenView:
    return TokenView(
        id=row.id,
        grant_id=row.grant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        connection_id=row.connection_id,
        authorization_code_id=row.authorization_code_id,
        scope=row.scope,
        resource=row.resource,
        created_at=row.created_at,
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        revoked=row.revoked_at is not None,
        presented=presented,
        now=now,
    )


class RefreshOutcome:
    """What presenting a refresh token amounts to."""

    def __init__(self, token: TokenView | None, replay_pair: dict[str, Any] | None = None) -> None:
        self.token = token
        # Set when the token was rotated moments ago: the pair it was rotated into, returned again.
        self.replay_pair = replay_pair


class OAuthStore:
    def __init__(
        self,
        clients: ClientRepository,
        tokens: TokenRepository,
        clock: Clock,
        settings: Settings,
        directory: ClientDirectory | None = None,
    ) -> None:
        self.clients = clients
        self.tokens = tokens
        self.clock = clock
        self.settings = settings
        # Without a directory (no metadata document resolver): registered and pre-registered clients only.
        self.directory = directory or ClientDirectory(settings.registration_modes, None)

    async def client(self, client_id: str) -> ClientView | None:
        """Registered, pre-registered or CIMD (`ClientDirectory.find`); raises `CimdError` for an unusable document."""
        row = await self.directory.find(self.clients, client_id)
        return client_view(row) if row else None

    async def save_client(self, client_info: dict[str, Any], metadata: dict[str, Any]) -> ClientView:
        secret = client_info.get("client_secret")
        row = OAuthClient(
            client_id=client_info["client_id"],
            client_secret_hash=hash_secret(secret) if secret else None,
            client_name=metadata.get("client_name"),
            redirect_uris=list(metadata["redirect_uris"]),
            grant_types=list(metadata["grant_types"]),
            response_types=list(metadata["response_types"]),
            token_endpoint_auth_method=metadata["token_endpoint_auth_method"],
            scope=metadata["scope"],
            provider_id=metadata.get("provider_id"),
            client_metadata=dict(metadata),
            client_id_issued_at=client_info["client_id_issued_at"],
            created_at=self.clock.now(),
        )
        await self.clients.add(row)
        return client_view(row)

    # -- authorization codes ------------------------------------------------------------------------------
    async def save_code(
        self,
        code: str,
        *,
        client_id: str,
        user_id: str,
        connection_id: str,
        redirect_uri: str,
        scope: str,
        resource: str,
        challenge: str,
        method: str,
    ) -> None:
        now = self.clock.now()
        await self.tokens.add_code(
            AuthorizationCode(
                id=new_id("code"),
                code_hash=hash_secret(code),
                client_id=client_id,
                user_id=user_id,
                connection_id=connection_id,
                redirect_uri=redirect_uri,
                scope=scope,
                resource=resource,
                code_challenge=challenge,
                code_challenge_method=method,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.authorization_code_ttl),
            )
        )

    async def find_code(self, code: str, client_id: str) -> CodeView | None:
        """A usable code, or None. A code presented again revokes everything issued from it."""
        row = await self.tokens.code_by_hash(hash_secret(code))
        if row is None or row.client_id != client_id:
            return None
        now = self.clock.now()
        if row.used_at is not None:
            await self.tokens.revoke_issued_from_code(row.id, now)
            return None
        if row.expires_at <= now:
            return None
        return CodeView(
            id=row.id,
            client_id=row.client_id,
            user_id=row.user_id,
            connection_id=row.connection_id,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            resource=row.resource,
            code_challenge=row.code_challenge,
            code_challenge_method=row.code_challenge_method,
        )

    async def consume_code(self, code: CodeView) -> bool:
        """True for the one exchange that wins; a loser is a replay and revokes what the winner got."""
        now = self.clock.now()
        if await self.tokens.use_code(code.id, now):
            return True
        await self.tokens.revoke_issued_from_code(code.id, now)
        return False

    async def connection_active(self, connection_id: str) -> bool:
        return await self.tokens.connection_active(connection_id)

    # -- tokens -------------------------------------------------------------------------------------------
    async def save_token(
        self,
        token: dict[str, Any],
        *,
        client_id: str,
        user_id: str,
        connection_id: str,
        resource: str,
        grant_id: str | None,
        code_id: str | None,
    ) -> str:
        now = self.clock.now()
        refresh = token.get("refresh_token")
        row = OAuthToken(
            id=new_id("tok"),
            grant_id=grant_id or new_id("grant"),
            client_id=client_id,
            user_id=user_id,
            connection_id=connection_id,
            authorization_code_id=code_id,
            scope=token.get("scope") or "",
            resource=resource,
            access_token_hash=hash_secret(token["access_token"]),
            refresh_token_hash=hash_secret(refresh) if refresh else None,
            created_at=now,
            access_expires_at=now + timedelta(seconds=int(token["expires_in"])),
            refresh_expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl) if refresh else None,
        )
        await self.tokens.add_token(row)
        return row.id

    async def present_refresh(self, refresh_token: str) -> RefreshOutcome:
        """RFC 6749 §10.4 / OAuth 2.1 §4.3.1: rotation with reuse detection, plus a short grace window."""
        row = await self.tokens.by_refresh_hash(hash_secret(refresh_token))
        now = self.clock.now()
        if row is None or row.revoked_at is not None:
            return RefreshOutcome(None)
        if row.refresh_expires_at is None or row.refresh_expires_at <= now:
            return RefreshOutcome(None)
        if row.rotated_at is None:
            return RefreshOutcome(_token_view(row, "refresh_token", now))
        # Rotated already. Within the grace window, a racing twin gets the same successor pair back.
        within_grace = now - row.rotated_at <= timedelta(seconds=self.settings.refresh_grace)
        if within_grace and row.successor_sealed:
            pair = unseal(refresh_token, GRACE_PURPOSE, row.successor_sealed)
            successor = await self.tokens.get(row.replaced_by_id or "")
            if pair is not None and successor is not None and successor.revoked_at is None:
                return RefreshOutcome(_token_view(row, "refresh_token", now), json.loads(pair))
        # Reuse of an old refresh token: assume it leaked and end the whole grant.
        await self.tokens.revoke_grant(row.grant_id, now)
        return RefreshOutcome(None)

    async def start_rotation(self, token: TokenView) -> bool:
        return await self.tokens.start_rotation(token.id, self.clock.now())

    async def finish_rotation(self, old: TokenView, old_refresh: str, new_id_: str, pair: dict[str, Any]) -> None:
        sealed = seal(old_refresh, GRACE_PURPOSE, json.dumps(pair).encode())
        await self.tokens.record_successor(old.id, new_id_, sealed)

    async def reread_refresh(self, refresh_token: str) -> RefreshOutcome:
        """After losing a rotation race: the winner has committed, so its successor is now readable."""
        return await self.present_refresh(refresh_token)

    async def find_token(self, token: str, hint: str | None) -> TokenView | None:
        digest = hash_secret(token)
        now = self.clock.now()
        order = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token", "refresh_token"]
        for kind in order:
            finder = self.tokens.by_refresh_hash if kind == "refresh_token" else self.tokens.by_access_hash
            row = await finder(digest)
            if row is not None:
                return _token_view(row, kind, now)
        return None

    async def revoke(self, token: TokenView) -> None:
        """RFC 7009 §2.1: revoking a refresh token ends its grant (and so its access tokens)."""
        now = self.clock.now()
        if token.presented == "refresh_token":
            await self.tokens.revoke_grant(token.grant_id, now)
        else:
            await self.tokens.revoke_token(token.id, now)
