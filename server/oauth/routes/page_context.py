"""What every handler of the authorization page starts from, as Litestar dependencies besides the issuer
(`issuer`, given to every OAuth route by `routes/__init__.py`): the flow (`flow`), the browser behind the request
with its cookie (`page`), and the posted form (`form`); and CSRF on every form the pages post, as a guard
(`csrf_guard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler
from litestar.response import Template

from vouchsim.server.core.issuer import is_secure
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.http.issuer import issuer_of
from vouchsim.server.oauth.authorize import AuthorizationFlow, Browser
from vouchsim.server.oauth.routes.common import error_page, form_params
from vouchsim.server.pairing.service import PairingService
from vouchsim.server.storage.repositories.authorizations import AuthorizationRepository
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository
from vouchsim.server.storage.repositories.pairings import PairingRepository
from vouchsim.server.storage.session import DbSession, transaction


def browser_cookie_name(issuer: str) -> str:
    # The __Host- prefix pins the cookie to this exact origin, but browsers accept it only over https.
    return "__Host-vouchsim_browser" if is_secure(issuer) else "vouchsim_browser"


def authorization_flow(db: DbSession, runtime: Runtime) -> AuthorizationFlow:
    pairing = PairingService(PairingRepository(db), runtime.clock, runtime.settings, runtime.hmac_key)
    return AuthorizationFlow(
        AuthorizationRepository(db),
        ConnectionRepository(db),
        DeviceRepository(db),
        pairing,
        runtime.clock,
        runtime.settings,
        runtime.hmac_key,
    )


@dataclass(frozen=True)
class PageContext:
    """The browser behind a request to the authorization page, and the cookie a new one is sent."""

    issuer: str
    flow: AuthorizationFlow
    browser: Browser
    cookie_ttl: int

    @property
    def cookies(self) -> list[Cookie]:
        if not self.browser.is_new:
            return []
        return [
            Cookie(
                key=browser_cookie_name(self.issuer),
                value=self.browser.secret,
                path="/",
                httponly=True,
                samesite="lax",
                secure=is_secure(self.issuer),
                max_age=self.cookie_ttl,
            )
        ]

    @property
    def csrf(self) -> str:
        """The token the page's forms carry back."""
        return self.flow.csrf_token(self.browser)


@dataclass(frozen=True)
class PageForm:
    """A form posted from one of the authorization pages (its CSRF token already checked by `csrf_guard`)."""

    fields: dict[str, list[str]]

    def field(self, name: str) -> str:
        return (self.fields.get(name) or [""])[0]


async def provide_flow(db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]) -> AuthorizationFlow:
    return authorization_flow(db, runtime)


async def page_context(
    request: Request[Any, Any, Any], issuer: str, flow: AuthorizationFlow, runtime: Runtime
) -> PageContext:
    """The browser behind the request: the cookie's, else a new one (sent its cookie with the next answer)."""
    browser = await flow.browser(request.cookies.get(browser_cookie_name(issuer)))
    return PageContext(issuer, flow, browser, runtime.settings.browser_session_ttl)


async def provide_page(
    request: Request[Any, Any, Any],
    issuer: NamedDependency[str],
    flow: NamedDependency[AuthorizationFlow],
    runtime: NamedDependency[Runtime],
) -> PageContext:
    return await page_context(request, issuer, flow, runtime)


async def provide_form(request: Request[Any, Any, Any]) -> PageForm:
    return PageForm(await form_params(request) or {})


PAGE_DEPENDENCIES = {
    "flow": Provide(provide_flow),
    "page": Provide(provide_page),
    "form": Provide(provide_form),
}


# -- CSRF ----------------------------------------------------------------------------------------------------
class FormExpired(Exception):
    """A page's form came back without the CSRF token of the browser that posts it."""


def form_expired(_request: Request[Any, Any, Any], _exc: FormExpired) -> Template:
    return error_page("This form has expired", "Reload the page and try again.", status=403)


async def csrf_guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """The form's `csrf` field must be the token of the browser (its cookie) that posts it; else `FormExpired`.

    Guards run before dependencies, so the browser is looked up in a short transaction of its own (read only)."""
    request = cast("Request[Any, Any, Any]", connection)
    runtime: Runtime = connection.app.state.runtime
    issuer = issuer_of(request, runtime)
    token = PageForm(await form_params(request) or {}).field("csrf")
    async with transaction(connection.app.state.resources.sessions) as db:
        known = await authorization_flow(db, runtime).csrf_ok_for(
            request.cookies.get(browser_cookie_name(issuer)), token
        )
    if not known:
        raise FormExpired()
