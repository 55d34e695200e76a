"""Debian's Chromium, driven by Playwright, for the tests of the authorization page in a real browser (and the
README's screenshots of it).

Playwright's own browser download does not work on a closed network, so Playwright is pointed at the system's
/usr/bin/chromium, which `./.ci/setup.sh --e2e` installs. A test module gets one browser (starting one takes
about a second) and each test fresh contexts (cookies, viewport) from `chromium_tabs`; all are closed after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: no GPU, no QUIC, no sync, component or background requests to the outside world.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000  # a click, a navigation, a wait: a stuck page fails the test well before ~20 s
MISSING = f"{CHROMIUM} is missing: run ./.ci/setup.sh --e2e (it installs Debian's chromium for these tests)"


class ChromiumMissing(RuntimeError):
    pass


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """The system's Chromium, headless; closed (with Playwright's driver) on the way out."""
    if not CHROMIUM.exists():  # noqa: ASYNC240  # one stat() before starting a browser
        raise ChromiumMissing(MISSING)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """One browser context with its page, and what went wrong in it: console errors (a CSP violation, a 404
    for a stylesheet or script) and uncaught script exceptions."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def _console(self, message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        # The browser asks every origin for /favicon.ico by itself; neither page links one.
        if message.type == "error" and urlsplit(url).path != "/favicon.ico":
            self.errors.append(f"console error: {message.text} ({url})")

    def _exception(self, error: Error) -> None:
        self.errors.append(f"uncaught exception: {error}")


class Tabs:
    """Opens fresh contexts (own cookies, own viewport) in one browser and closes them all at the end."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    async def open(self, **context_options: Any) -> Tab:
        context = await self.browser.new_context(**context_options)
        self.contexts.append(context)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        tab = Tab(context, await context.new_page())
        tab.page.on("console", tab._console)
        tab.page.on("pageerror", tab._exception)
        return tab

    async def close(self) -> None:
        while self.contexts:
            await self.contexts.pop().close()


# Named apart from the fixture names so that importing them into a test module (which is how a test module
# uses them: `from e2e.chromium import chromium_fixture, chromium_tabs_fixture`) shadows nothing.
@pytest.fixture(scope="module", name="chromium")
async def chromium_fixture() -> AsyncIterator[Browser]:
    """One headless Chromium for the test module; a missing /usr/bin/chromium fails (never skips) the tests."""
    if not CHROMIUM.exists():  # noqa: ASYNC240
        pytest.fail(MISSING, pytrace=False)
    async with launch_chromium() as browser:
        yield browser


@pytest.fixture(name="chromium_tabs")
async def chromium_tabs_fixture(chromium: Browser) -> AsyncIterator[Tabs]:
    tabs = Tabs(chromium)
    try:
        yield tabs
    finally:
        await tabs.close()
