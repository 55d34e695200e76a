"""Dynamic client registration (RFC 7591) over HTTP; the endpoint itself is `oauth.registration`. Client ID
Metadata Documents need no route: a URL `client_id` is resolved where it is used (`oauth.clients`)."""

from __future__ import annotations

import json
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc7591 import InvalidClientMetadataError
from litestar import Request, Response, post
from litestar.di import NamedDependency

from vouchsim.server import openapi
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import wire
from vouchsim.server.oauth.bridge import run_authlib
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.registration import Registration
from vouchsim.server.oauth.routes.common import NO_STORE, oauth_error_json, oauth_server
from vouchsim.server.storage.session import DbSession


class _JsonPayload:
    def __init__(self, data: Any) -> None:
        self.data = data


class _JsonRequest:
    def __init__(self, uri: str, data: Any, headers: dict[str, str]) -> None:
        self.method = "POST"
        self.uri = uri
        self.headers = headers
        self.payload = _JsonPayload(data)
        self.credential: Any = None


@post(
    "/oauth/register",
    tags=["oauth"],
    status_code=201,
    operation_class=openapi.operation(body=openapi.request_body(wire.ClientMetadata)),
    responses={
        201: openapi.response(wire.ClientInformation, "The client is registered (RFC 7591 §3.2.1)."),
        **openapi.error_responses(400),
    },
)
async def register(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    issuer: NamedDependency[str],
) -> Response[Any]:
    """RFC 7591 dynamic client registration (404 when `VOUCHSIM_REGISTRATION` leaves out `dcr`)."""
    if not clients.offers_registration:
        return oauth_error_json(
            "not_found", "Dynamic client registration is off on this server (VOUCHSIM_REGISTRATION).", 404
        )
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError:
        return oauth_error_json("invalid_client_metadata", "The body must be a JSON object.")
    if not isinstance(data, dict):
        return oauth_error_json("invalid_client_metadata", "The body must be a JSON object.")
    server = oauth_server(db, runtime, issuer)
    endpoint = Registration(server, issuer, server.store.save_client, int(runtime.clock.now().timestamp()))
    json_request = _JsonRequest(f"{issuer}/oauth/register", data, dict(request.headers))
    try:
        status, body, _headers = await run_authlib(lambda: endpoint.create_registration_response(json_request))
    except ValueError:
        return oauth_error_json("invalid_client_metadata", "A field contains characters that are not allowed.")
    except InvalidClientMetadataError as error:
        return oauth_error_json(error.error, error.description or "Invalid client metadata.")
    except OAuth2Error as error:
        return oauth_error_json(error.error, error.description or error.error)
    return Response(content=body, status_code=status, headers=NO_STORE, media_type="application/json")
