"""Debian's chromium for the Playwright tests (Playwright's own browser download is not available here)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
# Headless as root, and quiet: this machine's network is closed, so no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium); "
    "Playwright's own browser download is not available here",
)

# jupyter-collaboration asks "The document is taking some time to load. What would you like to do?" when a notebook's
# shared document has not synced within a fixed 5 s, and the modal stays until answered, even after the document
# loads. A loaded machine gets there; the tests answer as a patient human would.
SLOW_LOAD_DIALOG = ".jp-Dialog:has-text('taking some time to load')"
CONTINUE_WAITING = "Continue waiting"


def keep_waiting_for_slow_documents(page: Any) -> None:
    """Answer jupyter-collaboration's slow-load dialog with "Continue waiting" whenever it blocks ``page``."""
    dialog = page.locator(SLOW_LOAD_DIALOG)
    page.add_locator_handler(dialog, lambda: dialog.get_by_role("button", name=CONTINUE_WAITING).click())


async def keep_waiting_for_slow_documents_async(page: Any) -> None:
    """:func:`keep_waiting_for_slow_documents` for Playwright's async API."""
    dialog = page.locator(SLOW_LOAD_DIALOG)

    async def answer() -> None:
        await dialog.get_by_role("button", name=CONTINUE_WAITING).click()

    await page.add_locator_handler(dialog, answer)


def open_lab_notebook(browser: Any, url: str) -> Any:
    """A page of ``browser`` at a JupyterLab notebook ``url``: 1400x900, 60 s per action (a loaded machine), and
    the slow-load dialog answered whenever it shows."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    keep_waiting_for_slow_documents(page)
    page.goto(url)
    return page
