"""Write the README's screenshots of the authorization page: `uv run python docs/screenshots/make_page_screenshots.py`.

Starts a throwaway server (SQLite in a temporary directory), registers a client, opens its authorization URL in
the system's Chromium (the e2e tests' set-up: `./.ci/setup.sh --e2e` installs it) and saves what a desktop and a
phone browser window show, viewport only. The QR's secret is new on every run, so the QR itself changes.
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository, for e2e/ (not an installed package)

from e2e.chromium import launch_chromium  # noqa: E402
from e2e.harness import Pkce, authorization_url, register_client  # noqa: E402
from vouchsim.companion.testing import VouchsimServer  # noqa: E402

CLIENT_NAME = "Example MCP agent"
SHOTS: dict[str, dict[str, Any]] = {
    "authorization-page-desktop.png": {"viewport": {"width": 1280, "height": 800}},
    # A 390x844 phone at 2x rather than its real 3x: sharp enough, a third of the file.
    "authorization-page-phone.png": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
COLOURS = 64  # the page has few colours: a palette PNG is a fraction of the size and looks the same


def small_png(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        paletted = image.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    paletted.save(out, format="PNG", optimize=True)
    return out.getvalue()


async def capture(base_url: str, out: Path) -> list[Path]:
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = await register_client(http, base_url, client_name=CLIENT_NAME)
    written = []
    async with launch_chromium() as browser:
        for file_name, options in SHOTS.items():
            context = await browser.new_context(**options)
            try:
                page = await context.new_page()
                await page.goto(authorization_url(base_url, client, Pkce.new()))
                await page.wait_for_function("() => document.querySelector('figure.qr img')?.naturalWidth > 0")
                target = out / file_name
                target.write_bytes(small_png(await page.screenshot()))
                written.append(target)
            finally:
                await context.close()
    return written


def main(out: Path = HERE) -> int:
    with VouchsimServer() as server:
        for path in asyncio.run(capture(server.base_url, out)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
