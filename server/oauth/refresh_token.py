"""The refresh token grant (RFC 6749 §6): refresh tokens rotate, with reuse detection and a grace window in which
a retried refresh gets its twin's answer again."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from vouchsim.server.oauth.bridge import ALL_AUTH_METHODS, FormRequest, bridge
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.oauth.views import TokenView, UserView


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def store(self) -> OAuthStore:
        return self.server.store  # type: ignore[no-any-return]

    def validate_token_request(self) -> None:
        # Authlib's refresh grant runs no "after_validate_token_request" hooks: without this, ResourceIndicator
        # never saw a refresh's `resource`, and a foreign one was silently ignored (RFC 8707 §2: invalid_target).
        super().validate_token_request()
        self.execute_hook("after_validate_token_request", None)

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        outcome = bridge(self.store.present_refresh, refresh_token)
        self.request.replay_pair = outcome.replay_pair
        return outcome.token  # type: ignore[no-any-return]

    def authenticate_user(self, refresh_token: TokenView) -> UserView | None:
        if not bridge(self.store.connection_active, refresh_token.connection_id):
            return None
        return UserView(refresh_token.user_id, refresh_token.connection_id)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        request: FormRequest = self.request
        presented = request.form["refresh_token"]
        if request.replay_pair is not None:
            return 200, request.replay_pair, self.TOKEN_RESPONSE_HEADER
        if not bridge(self.store.start_rotation, request.refresh_token):
            # Another request rotated it between our read and our write: answer as its twin would be.
            outcome = bridge(self.store.reread_refresh, presented)
            if outcome.replay_pair is None:
                raise InvalidGrantError("The refresh token was already used.")
            return 200, outcome.replay_pair, self.TOKEN_RESPONSE_HEADER
        user = self.authenticate_user(request.refresh_token)
        if user is None:
            raise InvalidGrantError("The runtime connection behind this token was unpaired.")
        request.user = user
        token = self.issue_token(user, request.refresh_token)
        self.save_token(token)
        bridge(lambda: self.store.finish_rotation(request.refresh_token, presented, request.saved_token_id, token))
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def revoke_old_credential(self, refresh_token: TokenView) -> None:
        pass  # rotation is recorded in create_token_response
