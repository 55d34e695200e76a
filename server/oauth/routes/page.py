"""The authorization page: pairing (QR, code form, status polled by its script) and consent, and the forms they
post. Each handler starts from the page's dependencies (`page_context`): the issuer, the flow, the browser; every
form is CSRF-checked by a guard before its handler runs."""

from __future__ import annotations

from typing import Any

from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.authorize import RequestSummary
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.routes.authorization import deny, issue_code
from vouchsim.server.oauth.routes.common import (
    NO_STORE,
    error_page,
    oauth_error_json,
    oauth_server,
    page_response,
    redirect,
)
from vouchsim.server.oauth.routes.page_context import (
    PAGE_DEPENDENCIES,
    FormExpired,
    PageContext,
    PageForm,
    csrf_guard,
    form_expired,
)
from vouchsim.server.pairing import errors as pairing_errors
from vouchsim.server.pairing.qr import render_png
from vouchsim.server.storage.session import DbSession

TAGS = ["authorization page"]


def _scope_descriptions(summary: RequestSummary) -> list[tuple[str, str]]:
    return [(s, scopes.DESCRIPTIONS.get(s, s)) for s in summary.scopes]


# -- pairing -------------------------------------------------------------------------------------------------
def _pairing_context(csrf: str, view: Any, summary: RequestSummary, now_ts: float, **extra: Any) -> dict[str, Any]:
    return {
        "view": view,
        "summary": summary,
        "scope_descriptions": _scope_descriptions(summary),
        "csrf": csrf,
        "expires_in": max(0, int(view.expires_at.timestamp() - now_ts)),
        "code_expires_in": (max(0, int(view.code_expires_at.timestamp() - now_ts)) if view.code_expires_at else None),
        **extra,
    }


async def _pairing_response(
    db: DbSession,
    runtime: Runtime,
    page: PageContext,
    pairing_id: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response[Any]:
    flow, browser = page.flow, page.browser
    try:
        view, summary = await flow.pairing_view(browser, pairing_id)
    except VouchsimError as failure:
        return error_page("Pairing not found", failure.description, status=404)
    if view.status == "declined":
        try:
            summary = await flow.close(browser, summary.request_id)
        except VouchsimError:
            return error_page("Declined", "The pairing was declined on your device.", status=403)
        return await deny(
            oauth_server(db, runtime, page.issuer), summary, "The pairing was declined on the trusted device."
        )
    context = _pairing_context(page.csrf, view, summary, runtime.clock.now().timestamp(), error=error)
    return page_response("pairing.html", context, status=status, redirect_uri=summary.redirect_uri)


@get("/oauth/authorize/pairing/{pairing_id:str}", tags=TAGS, include_in_schema=False)
async def pairing_page(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    page: NamedDependency[PageContext],
    pairing_id: FromPath[str],
) -> Response[Any]:
    return await _pairing_response(db, runtime, page, pairing_id)


@get("/oauth/authorize/pairing/{pairing_id:str}/qr.png", tags=TAGS, include_in_schema=False)
async def pairing_qr(page: NamedDependency[PageContext], pairing_id: FromPath[str]) -> Response[Any]:
    try:
        payload = await page.flow.qr_payload(page.browser, pairing_id, page.issuer)
    except VouchsimError as failure:
        return Response(
            content=failure.description, status_code=failure.status, media_type="text/plain", headers=NO_STORE
        )
    return Response(content=render_png(payload), media_type="image/png", headers=NO_STORE)


@get("/oauth/authorize/pairing/{pairing_id:str}/status", tags=TAGS, include_in_schema=False)
async def pairing_status(
    runtime: NamedDependency[Runtime], page: NamedDependency[PageContext], pairing_id: FromPath[str]
) -> Response[Any]:
    """What the page's script polls to update itself while the person scans and approves."""
    try:
        view, _summary = await page.flow.pairing_view(page.browser, pairing_id)
    except VouchsimError as failure:
        return oauth_error_json(failure.code, failure.description, failure.status)
    now = runtime.clock.now().timestamp()
    return Response(
        content={
            "status": view.status,
            "device_name": view.device_name,
            "attempts_left": view.attempts_left,
            "expires_in": max(0, int(view.expires_at.timestamp() - now)),
        },
        headers=NO_STORE,
        media_type="application/json",
    )


@post("/oauth/authorize/pairing/{pairing_id:str}", tags=TAGS, include_in_schema=False, guards=[csrf_guard])
async def pairing_submit(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    page: NamedDependency[PageContext],
    form: NamedDependency[PageForm],
    pairing_id: FromPath[str],
) -> Response[Any]:
    """The pairing code typed by the person. Failures re-render the page (and are committed, not rolled back)."""
    try:
        approved = await page.flow.submit_code(page.browser, pairing_id, form.field("code"))
    except pairing_errors.PairingDeclined:
        return await _pairing_response(db, runtime, page, pairing_id)
    except pairing_errors.WrongPairingCode as failure:
        return await _pairing_response(db, runtime, page, pairing_id, status=400, error=failure.description)
    except VouchsimError as failure:
        return await _pairing_response(db, runtime, page, pairing_id, status=failure.status, error=failure.description)
    return await issue_code(db, runtime, clients, page.issuer, approved)


@post("/oauth/authorize/requests/{request_id:str}/pair", tags=TAGS, include_in_schema=False, guards=[csrf_guard])
async def restart_pairing(page: NamedDependency[PageContext], request_id: FromPath[str]) -> Response[Any]:
    """A fresh QR for the same request (after expiry or too many wrong codes, or to use another device)."""
    try:
        pairing_id = await page.flow.start_pairing(page.browser, request_id, page.issuer)
    except VouchsimError as failure:
        return error_page("Start again from the application", failure.description, status=failure.status)
    return redirect(f"/oauth/authorize/pairing/{pairing_id}")


@post("/oauth/authorize/requests/{request_id:str}/deny", tags=TAGS, include_in_schema=False, guards=[csrf_guard])
async def deny_request(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    page: NamedDependency[PageContext],
    request_id: FromPath[str],
) -> Response[Any]:
    try:
        summary = await page.flow.close(page.browser, request_id)
    except VouchsimError as failure:
        return error_page("Nothing to deny", failure.description, status=failure.status)
    return await deny(oauth_server(db, runtime, page.issuer), summary, "The user denied the request.")


# -- consent -------------------------------------------------------------------------------------------------
@get("/oauth/authorize/requests/{request_id:str}/consent", tags=TAGS, include_in_schema=False)
async def consent_page(page: NamedDependency[PageContext], request_id: FromPath[str]) -> Response[Any]:
    try:
        summary = await page.flow.summary(page.browser, request_id)
    except VouchsimError as failure:
        return error_page("Request not found", failure.description, status=failure.status)
    if page.browser.user_id is None:
        pairing_id = await page.flow.start_pairing(page.browser, request_id, page.issuer)
        return redirect(f"/oauth/authorize/pairing/{pairing_id}")
    context = {"summary": summary, "csrf": page.csrf, "scope_descriptions": _scope_descriptions(summary)}
    return page_response("consent.html", context, redirect_uri=summary.redirect_uri)


@post("/oauth/authorize/requests/{request_id:str}/consent", tags=TAGS, include_in_schema=False, guards=[csrf_guard])
async def consent_submit(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    page: NamedDependency[PageContext],
    request_id: FromPath[str],
) -> Response[Any]:
    try:
        approved = await page.flow.consent(page.browser, request_id)
    except VouchsimError as failure:
        return error_page("Could not authorize", failure.description, status=failure.status)
    return await issue_code(db, runtime, clients, page.issuer, approved)


page_router = Router(
    path="/",
    route_handlers=[
        pairing_page,
        pairing_qr,
        pairing_status,
        pairing_submit,
        restart_pairing,
        deny_request,
        consent_page,
        consent_submit,
    ],
    dependencies=PAGE_DEPENDENCIES,
    exception_handlers={FormExpired: form_expired},
    include_in_schema=False,
)
