"""The person at the authorization page, headless: httpx with one cookie jar plays the browser.

`AuthorizationPage(device).complete(url)` opens an authorization URL, follows its redirects to the pairing page,
downloads the page's QR (with the page's cookie, as a browser would), decodes it, lets the trusted device claim and
approve the pairing, types the pairing code with the page's CSRF field, and returns the 303's Location: the redirect
back to the OAuth client (with `code`, `state`, `iss`, or an `error` such as `access_denied`). When the browser is
already signed in, the server shows "Authorize with this session" instead; that is accepted. A `PairingHandler` can
stand between the QR and the code (`vouchsim companion scan URL` asks the person first, and may decline).

`authorize_url()` is `vouchsim companion authorize-url`: the same, enrolling the device first when its state
directory holds no enrolment yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx

from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.errors import CompanionError
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.qr import decode_qr
from vouchsim.companion.core.text import sentence

HTTP_TIMEOUT: Final = 30.0
MAX_REDIRECTS: Final = 10
AUTHORIZE_PREFIX: Final = "/oauth/authorize"

# Given the text of a pairing QR: claim it, and return the pairing code once approved, or None once declined.
PairingHandler = Callable[[str], Awaitable[str | None]]


class AuthorizationPageError(CompanionError):
    default_message = "The authorization page could not be completed."


class NotAnAuthorizationUrlError(AuthorizationPageError):
    default_message = "That is not an authorization URL of this server."
    hint = "Pass the URL the OAuth client opens: the server's /oauth/authorize?… with its query."


class PageParser(HTMLParser):
    """The images, forms (action and named inputs) and alerts of an authorization page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.alerts: list[str] = []
        self._in_alert = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "img" and attributes.get("src"):
            self.images.append(attributes["src"])
        elif tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        self._in_alert = attributes.get("role") == "alert"

    def handle_data(self, data: str) -> None:
        if self._in_alert and data.strip():
            self.alerts.append(" ".join(data.split()))

    def handle_endtag(self, tag: str) -> None:
        self._in_alert = False


@dataclass
class _Page:
    url: str
    images: list[str]
    forms: list[tuple[str, dict[str, str]]]
    alerts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, response: httpx.Response) -> _Page:
        parser = PageParser()
        parser.feed(response.text)
        return cls(str(response.url), parser.images, parser.forms, parser.alerts)

    def form(self, *, with_field: str | None = None, action_suffix: str | None = None) -> tuple[str, dict[str, str]]:
        for action, fields in self.forms:
            if (with_field is None or with_field in fields) and (
                action_suffix is None or urlsplit(action).path.endswith(action_suffix)
            ):
                return urljoin(self.url, action), fields
        raise LookupError

    @property
    def qr_url(self) -> str | None:
        found = [src for src in self.images if urlsplit(src).path.endswith("/qr.png")]
        return urljoin(self.url, found[0]) if found else None


def is_image(response: httpx.Response) -> bool:
    """A 200 answer carrying a picture (a QR image URL), not a page."""
    kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return response.status_code == 200 and kind.startswith("image/")


class AuthorizationPage:
    """One browser (one cookie jar) completing authorization pages with `device` as the trusted device.
    Pass `http` to use your own client (it must not follow redirects); otherwise `aclose()` closes ours."""

    def __init__(self, device: DeviceApiClient, *, http: httpx.AsyncClient | None = None) -> None:
        self.device = device
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> AuthorizationPage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def complete(self, authorize_url: str, *, pair: PairingHandler | None = None) -> str:
        """The whole visit; returns the URL the browser is finally sent to (the client's redirect URI). Without
        `pair`, the device claims and approves the pairing by itself."""
        return await self.follow(await self.open(authorize_url), pair=pair)

    async def open(self, url: str) -> httpx.Response:
        """The browser's first request for `url` (redirects not followed): hand it to `follow()`, unless it is a
        picture (`is_image`), which a person scanning a QR image URL may also have given."""
        return await self._get(url)

    async def follow(self, response: httpx.Response, *, pair: PairingHandler | None = None) -> str:
        """From `response` on, page after page, until the browser is sent back to the client."""
        for _ in range(MAX_REDIRECTS):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if not self._on_authorization_page(location):
                    return location  # back to the client: a code, or an error such as access_denied
                response = await self._get(location)
                continue
            if response.status_code != 200:
                hint = NotAnAuthorizationUrlError.hint if response.status_code == 404 else ""
                raise AuthorizationPageError(
                    sentence(f"{_where(response)} answered {response.status_code}{_alerts(response)}", hint)
                )
            response = await self._act(_Page.of(response), pair or self._approve)
        raise AuthorizationPageError(f"More than {MAX_REDIRECTS} steps without getting back to the client.")

    async def _act(self, page: _Page, pair: PairingHandler) -> httpx.Response:
        """Answer one page: the pairing page (QR, device, code) or the consent page."""
        if page.qr_url is not None:
            try:
                action, fields = page.form(with_field="code")
            except LookupError:
                raise AuthorizationPageError(f"The pairing page at {page.url} has no code field.") from None
            code = await pair(await self._qr_text(page.qr_url))
            if code is None:  # declined on the device: the page now sends the browser back with access_denied
                return await self._get(page.url)
            answer = await self.http.post(action, data={**fields, "code": code})
            if not answer.is_redirect:
                raise AuthorizationPageError(
                    sentence(f"The pairing page refused the code: HTTP {answer.status_code}{_alerts(answer)}")
                )
            return answer
        try:
            action, fields = page.form(with_field="csrf", action_suffix="/consent")
        except LookupError:
            alerts = f": {' '.join(page.alerts)}" if page.alerts else ""
            raise AuthorizationPageError(
                sentence(f"The page at {page.url} is neither a pairing page nor a consent page{alerts}")
            ) from None
        return await self.http.post(action, data=fields)

    async def _qr_text(self, qr_url: str) -> str:
        image = await self._get(qr_url)  # the page's cookie goes with it
        if image.status_code != 200:
            raise AuthorizationPageError(f"The QR image at {qr_url} answered {image.status_code}.")
        return await decode_qr(image.content)

    async def _approve(self, payload: str) -> str:
        context = await self.device.claim(payload)
        approval = await self.device.approve_pairing(context.pairing_id)
        return approval.pairing_code

    async def _get(self, url: str) -> httpx.Response:
        try:
            return await self.http.get(url)
        except httpx.HTTPError as exc:
            raise AuthorizationPageError(f"Could not open {url}: {exc.__class__.__name__} {exc}".strip()) from exc

    def _on_authorization_page(self, url: str) -> bool:
        parts, server = urlsplit(url), urlsplit(self.device.server_url)
        return (parts.scheme, parts.netloc) == (server.scheme, server.netloc) and parts.path.startswith(
            AUTHORIZE_PREFIX
        )


async def authorize_url(
    url: str,
    keystore: Keystore,
    *,
    http_for: Callable[[str], httpx.AsyncClient],
    device_name: str,
    server_url: str | None = None,
    on_enrolled: Callable[[str], None] | None = None,
) -> str:
    """Complete the authorization page at `url` with the device in `keystore`, enrolling it first (with
    `server_url`, or the URL's origin) when it is not enrolled yet; the redirect URL back to the client."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NotAnAuthorizationUrlError(f"Expected an http(s) authorization URL, got {url!r}.")
    enrolment = keystore.read_enrolment()
    server = server_url or (enrolment.server_url if enrolment else f"{parts.scheme}://{parts.netloc}")
    async with http_for(server.rstrip("/")) as http:
        device = DeviceApiClient(http, keystore)
        if enrolment is None:
            await device.enrol(device_name)
            if on_enrolled is not None:
                on_enrolled(device.server_url)
        async with AuthorizationPage(device) as page:
            return await page.complete(url)


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.url.copy_with(query=None)}"


def _alerts(response: httpx.Response) -> str:
    alerts = PageParser()
    alerts.feed(response.text)
    return f": {' '.join(alerts.alerts)}" if alerts.alerts else ""
