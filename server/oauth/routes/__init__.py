"""The authorization server over HTTP: the only part of `server.oauth` that knows Litestar. One module per
concern: `discovery` (RFC 8414, RFC 9728, JWKS), `registration` (RFC 7591), `authorization` (RFC 6749 §4.1),
`page` (the authorization page, on the dependencies and CSRF guard of `page_context`), `token` (RFC 6749 §3.2),
`revocation` (RFC 7009), `introspection` (RFC 7662); `common` and `endpoints` hold what they share.

Every route here gets `issuer` (`server.http.issuer`) as a dependency; `delegation_tokens` (the
`DelegationTokens` Protocol) and the rest come from `server/app.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from vouchsim.server.http.issuer import provide_issuer
from vouchsim.server.oauth.routes.authorization import authorize
from vouchsim.server.oauth.routes.discovery import (
    authorization_server_metadata_route,
    jwks,
    protected_resource_metadata_route,
)
from vouchsim.server.oauth.routes.introspection import introspect
from vouchsim.server.oauth.routes.page import page_router
from vouchsim.server.oauth.routes.registration import register
from vouchsim.server.oauth.routes.revocation import revoke
from vouchsim.server.oauth.routes.token import token

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"

static_files = create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False)

oauth_routes: list[Any] = [
    Router(
        path="/",
        route_handlers=[
            authorization_server_metadata_route,
            protected_resource_metadata_route,
            register,
            authorize,
            page_router,
            token,
            revoke,
            introspect,
            jwks,
        ],
        dependencies={"issuer": Provide(provide_issuer)},
    ),
    static_files,
]
