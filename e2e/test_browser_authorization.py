"""The authorization page in a real browser (headless Chromium, driven by Playwright).

What the httpx `Browser` of the other e2e tests cannot see: that the page a person gets actually renders a QR a
camera can read, that its own script, styles and CSP work together, and that its form, typed into and submitted
by a browser, takes the browser (303, under the page's CSP `form-action`) back to the client's loopback
redirect URI.

- The flow: the companion's real CLI scans a screenshot of the rendered page (never the QR's image URL), the
  code it shows is typed into the page with the keyboard, and Chromium lands on a loopback HTTP server with a
  code, the state and `iss`; the code is then exchanged with PKCE and the token is used at /mcp.
- The layout, at a phone (light and dark) and a desktop viewport, for a client whose name has a very long
  word: no horizontal scrolling and nothing wider than the screen, no text spilling out of its box, no two
  blocks overlapping; the QR on the first screen, large enough, rendered and readable from a screenshot; the
  code field and its button visible, on screen (on the first screen at the desktop size), big enough to tap,
  not covered and not overlapping the QR; and all that again after a code typed too early, with its alert.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from PIL import Image
from playwright.async_api import Page, expect

from e2e.chromium import Tabs, chromium_fixture, chromium_tabs_fixture  # noqa: F401  (the fixtures)
from e2e.harness import (
    Companion,
    LiveServer,
    Pkce,
    authorization_url,
    exchange_code,
    mcp_initialize,
    query_of,
    register_client,
)
from vouchsim.companion.core.qr import decode_qr_file

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DESKTOP = {"width": 1280, "height": 800}
CODE_FIELD = "Pairing code shown on your device"  # the field's <label>: how a person (and a screen reader) finds it
QR = "figure.qr img"


# --- the OAuth client's side: a loopback redirect URI where something really answers ---------------------


@dataclass
class Callback:
    url: str
    received: list[str]  # request targets (path and query), in order


@contextmanager
def loopback_callback() -> Iterator[Callback]:
    """An HTTP server on 127.0.0.1 that answers 200 on /callback, as a native client's redirect handler
    would (RFC 8252 §7.3), so the browser's last navigation really completes."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.path)
            found = urlsplit(self.path).path == "/callback"
            body = b"<!doctype html><title>Signed in</title><p>You can close this tab.</p>" if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reports what it saw
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="loopback-callback", daemon=True)
    thread.start()
    try:
        yield Callback(f"http://127.0.0.1:{server.server_address[1]}/callback", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def qr_rendered(page: Page) -> None:
    """Wait until the QR's PNG is loaded and decoded (a screenshot taken before would show an empty box)."""
    await page.wait_for_function(
        "(selector) => { const img = document.querySelector(selector);"
        " return img !== null && img.complete && img.naturalWidth > 0; }",
        arg=QR,
    )


# --- the flow ---------------------------------------------------------------------------------------------


@pytest.mark.requirement("BROWSER-AUTHORIZATION-PAGE", "PAIRING-QR-APPROVE", "OAUTH-AUTHZ-CODE-RESPONSE")
async def test_chromium_pairs_from_a_screenshot_and_lands_on_the_redirect_uri(
    live_server: LiveServer, companion: Companion, http: httpx.AsyncClient, chromium_tabs: Tabs, tmp_path: Path
) -> None:
    with loopback_callback() as callback:
        client = await register_client(
            http, live_server.base_url, client_name="Vouchsim e2e (Chromium)", redirect_uris=[callback.url]
        )
        pkce = Pkce.new()
        state = secrets.token_urlsafe(16)
        url = authorization_url(live_server.base_url, client, pkce, state=state)
        tab = await chromium_tabs.open(viewport=DESKTOP)
        page = tab.page

        # Chromium follows the authorization endpoint's 303 to the pairing page by itself.
        response = await page.goto(url)
        assert response is not None and response.status == 200, response and await response.text()
        first = response.request.redirected_from
        assert first is not None and first.url == url
        assert (redirect := await first.response()) is not None and redirect.status == 303
        assert urlsplit(page.url).path.startswith("/oauth/authorize/pairing/"), page.url
        await expect(page.get_by_role("heading", name="Scan with your trusted device")).to_be_visible()
        await expect(page.get_by_text("Vouchsim e2e (Chromium)").first).to_be_visible()

        # What the person's phone sees: the whole rendered page, as pixels.
        await qr_rendered(page)
        screenshot = tmp_path / "authorization-page.png"
        await page.screenshot(path=screenshot, full_page=True)
        with Image.open(screenshot) as image:
            page_height = await page.evaluate("document.documentElement.scrollHeight")
            assert image.size == (1280, page_height), image.size  # the page, not the QR's own PNG
        code = await companion.scan_and_approve(screenshot)

        # The page's script notices the approval and puts the cursor in the code field: the person just types.
        await expect(page.locator("#pairing-state")).to_contain_text("Approved on e2e phone", timeout=10_000)
        field = page.get_by_label(CODE_FIELD)
        await expect(field).to_be_focused()
        await page.keyboard.type(code.lower().replace("-", ""))  # case and dash don't matter (README)
        await page.get_by_role("button", name="Continue").click()

        await page.wait_for_url(lambda at: at.startswith(callback.url + "?"))
        await expect(page.get_by_text("You can close this tab.")).to_be_visible()
        landed = query_of(page.url)
        assert set(landed) == {"code", "state", "iss"}, landed
        assert landed["state"] == state
        assert landed["iss"] == live_server.base_url
        # The loopback server really was reached, once, with exactly what the address bar shows (the browser
        # also asks it for /favicon.ico).
        origin = callback.url.removesuffix("/callback")
        assert [target for target in callback.received if target.startswith("/callback")] == [
            page.url.removeprefix(origin)
        ]
        assert tab.errors == [], tab.errors  # no CSP violation, no missing resource, no script error

    # A real code: it buys tokens with the PKCE verifier, and the access token opens /mcp.
    exchanged = await exchange_code(http, live_server.base_url, client, landed["code"], pkce.verifier)
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    answer = await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])
    assert answer.status_code == 200, answer.text


# --- the layout -------------------------------------------------------------------------------------------

# Everything one look at the page needs, in CSS pixels of the viewport: the boxes of the QR, the code field, its
# button, the cancel button and any alert; the document's width; every element that sticks out of the viewport
# sideways or whose content is wider than its own box (text that is cut off or spills over); and every two
# blocks of text, controls or images that overlap.
MEASURE = """
(qrSelector) => {
  const box = (el) => {
    if (!el) { return null; }
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "")
    + " " + JSON.stringify((el.textContent || "").trim().slice(0, 40));
  const onTop = (el) => {  // what a tap at the element's centre would hit
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return hit !== null && (hit === el || el.contains(hit));
  };
  const sticksOut = [], spills = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) { continue; }
    if (r.left < -0.5 || r.right > innerWidth + 0.5) { sticksOut.push(name(el)); }
    if (el.tagName !== "INPUT" && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) { spills.push(name(el)); }
  }
  // Pairs of the page's blocks (text, controls, the QR) that overlap: one would hide the other.
  const blocks = [...document.body.querySelectorAll(
    "header, h1, p, label, input:not([type=hidden]), button, dt, dd, li, img")]
    .filter((el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; });
  const overlaps = [];
  blocks.forEach((a, i) => blocks.slice(i + 1).forEach((b) => {
    if (a.contains(b) || b.contains(a)) { return; }
    const p = a.getBoundingClientRect(), q = b.getBoundingClientRect();
    if (p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5) {
      overlaps.push(name(a) + " / " + name(b));
    }
  }));
  const qr = document.querySelector(qrSelector);
  const field = document.getElementById("code");
  const button = document.querySelector("form.code-form button[type=submit]");
  const cancel = document.querySelector(".secondary-actions button");
  return {
    innerWidth, innerHeight, scrollY,
    scrollWidth: document.documentElement.scrollWidth,
    qr: box(qr), qrNaturalWidth: qr ? qr.naturalWidth : 0, qrOnTop: qr ? onTop(qr) : false,
    field: box(field), fieldOnTop: field ? onTop(field) : false,
    button: box(button), buttonOnTop: button ? onTop(button) : false,
    cancel: box(cancel), cancelOnTop: cancel ? onTop(cancel) : false,
    alert: box(document.querySelector("[role=alert]")),
    sticksOut, spills, overlaps,
  };
}
"""


@dataclass(frozen=True)
class Screen:
    name: str
    context: dict[str, Any]
    # The QR's smallest side, CSS px. A phone camera reads a screen QR from about ten times its width away:
    # 160 px on a 390-px-wide phone screen (~6.5 cm, so ~60 px/cm) is ~2.7 cm, read from ~25 cm; a desktop
    # screen (~38-45 CSS px/cm) is read from further away, ~50 cm: ~5 cm, 200 px.
    min_qr: float
    # The field and the buttons: 44 CSS px high to be tapped with a finger (WCAG 2.2 SC 2.5.5, Apple's HIG);
    # 24 px where there is a mouse (WCAG 2.2 SC 2.5.8).
    min_target: float
    # At the desktop size the person scans, then types: QR, field and button all on the first screen.
    all_on_first_screen: bool


# A phone like an iPhone 12 to 15 (its layout viewport, pixel ratio and touch), and a laptop's browser window.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
SCREENS = [
    Screen("phone", PHONE, min_qr=160, min_target=44, all_on_first_screen=False),
    Screen("phone-dark", {**PHONE, "color_scheme": "dark"}, min_qr=160, min_target=44, all_on_first_screen=False),
    Screen("desktop", {"viewport": DESKTOP}, min_qr=200, min_target=24, all_on_first_screen=True),
]
# A client chooses its own name (RFC 7591; up to 512 characters here): this one has a word longer than a phone
# is wide, which the page must wrap rather than let it widen the page.
LONG_NAME = "Layout check agent on build7f3a9c2e5b1d4e6f8a0b.runners.ci.example.internal"
NOT_APPROVED = "The device has not approved this pairing yet, so there is no code to type."


def inside(box: dict[str, float], width: float, height: float) -> bool:
    return box["left"] >= -0.5 and box["top"] >= -0.5 and box["right"] <= width + 0.5 and box["bottom"] <= height + 0.5


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


async def check_layout(page: Page, screen: Screen, when: str) -> dict[str, Any]:
    """The page as it is (scrolled to the top): the layout checks shared by the fresh page and the page
    after a wrong code. Returns the measurements."""
    await page.evaluate("window.scrollTo(0, 0)")
    m: dict[str, Any] = await page.evaluate(MEASURE, QR)
    width, height = m["innerWidth"], m["innerHeight"]
    where = f"{screen.name}, {when}: {m}"
    assert m["scrollY"] == 0, where
    # A mobile browser widens its layout viewport (and zooms out) to fit content wider than the screen, so
    # there the page's width, not only its scroll width, must still be the screen's.
    assert width == screen.context["viewport"]["width"], where
    # No horizontal scrolling (WCAG 1.4.10), nothing sticking out sideways, no text spilling out of its box.
    assert m["scrollWidth"] <= width, where
    assert m["sticksOut"] == [], f"sticks out sideways: {m['sticksOut']} ({where})"
    assert m["spills"] == [], f"content wider than its box: {m['spills']} ({where})"
    assert m["overlaps"] == [], f"overlapping blocks: {m['overlaps']} ({where})"

    qr = m["qr"]
    assert qr is not None and m["qrNaturalWidth"] > 0, where  # there, and its PNG loaded and decoded
    assert inside(qr, width, height), f"the QR is not entirely on the first screen ({where})"
    assert min(qr["width"], qr["height"]) >= screen.min_qr, where
    assert m["qrOnTop"], f"something covers the QR ({where})"

    for name in ("field", "button", "cancel"):
        control = m[name]
        assert control is not None, f"no {name} ({where})"
        assert control["left"] >= 0 and control["right"] <= width, f"the {name} is cut off sideways ({where})"
        assert control["height"] >= screen.min_target, f"the {name} is too small to hit ({where})"
        assert not overlap(control, qr), f"the {name} overlaps the QR ({where})"
        if screen.all_on_first_screen:
            assert inside(control, width, height), f"the {name} is not on the first screen ({where})"
            assert m[f"{name}OnTop"], f"something covers the {name} ({where})"
    assert not overlap(m["field"], m["button"]), where
    if m["alert"] is not None:
        assert not overlap(m["alert"], qr), where

    # Off the first screen on a phone: scrolled to, each control is then entirely on screen and not covered.
    field = page.get_by_label(CODE_FIELD)
    button = page.locator("form.code-form").get_by_role("button", name="Continue")
    for name, control in (("field", field), ("button", button)):
        await expect(control).to_be_visible()
        await control.scroll_into_view_if_needed()
        seen = await page.evaluate(MEASURE, QR)
        assert inside(seen[name], width, height) and seen[f"{name}OnTop"], f"{name} scrolled to ({where}): {seen}"
    return m


@pytest.mark.requirement("BROWSER-LAYOUT")
@pytest.mark.parametrize("screen", SCREENS, ids=[screen.name for screen in SCREENS])
async def test_the_authorization_page_fits_the_screen(
    live_server: LiveServer, http: httpx.AsyncClient, chromium_tabs: Tabs, screen: Screen, tmp_path: Path
) -> None:
    client = await register_client(http, live_server.base_url, client_name=LONG_NAME)
    tab = await chromium_tabs.open(**screen.context)
    page = tab.page
    await page.goto(authorization_url(live_server.base_url, client, Pkce.new()))
    assert urlsplit(page.url).path.startswith("/oauth/authorize/pairing/"), page.url
    await qr_rendered(page)
    await check_layout(page, screen, "fresh page")

    # As shown at this size (viewport only), the QR decodes, with the same decoder the companion scans with.
    shot = tmp_path / f"{screen.name}.png"
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=shot)
    assert decode_qr_file(shot).startswith(f"vouchsim://pair?v=1&iss={quote(live_server.base_url, safe='')}&secret=")
    assert tab.errors == [], tab.errors

    # A code typed before any device approved: the page comes back with its alert and the tries left, and
    # still fits.
    await page.get_by_label(CODE_FIELD).fill("BBBB-BBBB")
    await page.locator("form.code-form").get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_have_text(NOT_APPROVED)
    await expect(page.locator("#code-help")).to_have_text("4 tries left.")
    await qr_rendered(page)
    after = await check_layout(page, screen, "after a wrong code")
    assert after["alert"] is not None and after["alert"]["height"] > 0, after
    # Chromium reports the page's own 409 (the answer is one on purpose); nothing else went wrong.
    assert [error for error in tab.errors if "status of 409" not in error or page.url not in error] == [], tab.errors
