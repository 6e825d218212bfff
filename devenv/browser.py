"""A real browser for UI tests: Debian's Chromium driven by Playwright, never a downloaded browser.

``make services`` installs Debian's ``chromium`` when it is missing. Playwright (from PyPI) only
drives it: ``executable_path`` points at the system binary, so nothing is fetched at run time.
The flags keep a headless Chromium from reaching out to the network (none exists here) and from
needing a sandbox or a GPU (tests run as root in a container).

    with chromium_page() as page:
        page.goto(url)
        page.screenshot(path=tmp_path / "page.png")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = os.environ.get("CONTACT_SYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_missing() -> str | None:
    """Why no browser test can run here (for ``pytest.skip``), or None when Chromium is there."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found: run `make services` as root (installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements-dev.txt)"
    return None


@contextmanager
def chromium_page(*, width: int = 1400, height: int = 900) -> Iterator[Page]:
    """A fresh page in a headless system Chromium (a new, empty profile); closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            try:
                yield context.new_page()
            finally:
                context.close()
        finally:
            browser.close()
