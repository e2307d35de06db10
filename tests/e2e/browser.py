"""Headless Chromium from Debian's ``chromium`` package, driven by Playwright, for the browser tests.

Playwright's own browser download (``playwright install``) cannot run here: it is pointed at the
system's Chromium instead. Pages reach nothing but 127.0.0.1; WhatsApp Manager, the one outside
page a test opens, is answered by a stand-in page that shows the address the link opened.
"""

from __future__ import annotations

import html
import io
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, Route, expect

from devtools.airflow_deployment import REPO

CHROMIUM = Path(os.environ.get("WHATSAPP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's services, which a closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# Generous: under load the UI's first render can take several seconds, and every wait is bounded.
UI_TIMEOUT_MS = 60_000
SCREENSHOTS_ENV = "WHATSAPP_UI_SCREENSHOTS"
DEFAULT_SCREENSHOTS = REPO / "build" / "ui-screenshots"
NOT_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")
WHATSAPP_MANAGER_HOST = "business.facebook.com"

expect.set_options(timeout=UI_TIMEOUT_MS)


def launch_chromium(chromium: BrowserType) -> Browser:
    """Start Debian's Chromium headless; Playwright gives it a fresh ``--user-data-dir`` of its own."""
    return chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def new_page(browser: Browser, base_url: str) -> Page:
    """A page in a fresh context: 1280x800, the UI's address as base, loopback only."""
    context: BrowserContext = browser.new_context(viewport=VIEWPORT, base_url=base_url)  # type: ignore[arg-type]
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.route(NOT_LOOPBACK, _outside)
    return context.new_page()


def _outside(route: Route) -> None:
    url = route.request.url
    if urlsplit(url).hostname != WHATSAPP_MANAGER_HOST:
        route.abort("blockedbyclient")
        return
    query = parse_qs(urlsplit(url).query)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td id='{html.escape(name)}'>{html.escape(values[0])}</td></tr>"
        for name, values in query.items()
    )
    route.fulfill(
        status=200,
        content_type="text/html; charset=utf-8",
        body=(
            "<!doctype html><html><head><title>WhatsApp Manager (stand-in)</title></head>"
            "<body style='font-family: sans-serif; margin: 40px'>"
            "<h1>WhatsApp Manager</h1>"
            "<p>Stand-in page: the tests cannot reach Meta. The link opened:</p>"
            f"<p><code id='url'>{html.escape(url)}</code></p>"
            f"<table cellpadding='6'>{rows}</table></body></html>"
        ),
    )


class Screenshots:
    """A PNG of each step, 1280x800 in 256 colours (a few tens of kB), in one folder.

    :param folder: where to write them; ``$WHATSAPP_UI_SCREENSHOTS`` or ``build/ui-screenshots``.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(os.environ.get(SCREENSHOTS_ENV) or DEFAULT_SCREENSHOTS)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Page, name: str) -> Path:
        """Save what ``page`` shows now as ``<name>.png``."""
        from PIL import Image

        # Animations finished, not caught halfway (a message still sliding in).
        image = Image.open(io.BytesIO(page.screenshot(animations="disabled"))).convert("RGB")
        # No dithering: UI screenshots are flat colours, and dithering would only add noise.
        palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        path = self.folder / f"{name}.png"
        palette.save(path, "PNG", optimize=True)
        self.taken.append(path)
        return path


# Where a test's phase reports are kept, so that its fixtures can tell whether it failed.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
# The session's screenshots, for the line the run ends with.
SCREENSHOTS = pytest.StashKey[Screenshots]()
