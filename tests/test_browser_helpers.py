"""The browser tests' own helpers, in chromium: a slow-load dialog in the way of a click is answered."""

from __future__ import annotations

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep_waiting_for_slow_documents, requires_chromium

# The markup jupyter-collaboration shows (a modal over the notebook), reduced to what matters: it covers the page
# and goes away only through its buttons.
PAGE = """
<div class="cm-content" contenteditable="true" onclick="document.title = 'clicked'">a cell</div>
<div class="lm-Widget jp-Dialog" style="position: fixed; inset: 0; background: white">
  <div>Loading</div><div>The document is taking some time to load. What would you like to do?</div>
  <button onclick="document.title = 'gave up'">Cancel</button>
  <button onclick="this.parentElement.remove()">Continue waiting</button>
</div>
"""


@requires_chromium
@pytest.mark.timeout(60)
def test_the_slow_load_dialog_is_answered_continue_waiting_before_a_click() -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_content(PAGE)
            with pytest.raises(Exception, match="intercepts pointer events"):
                page.locator(".cm-content").click(timeout=1_000)  # without the helper the modal is in the way
            keep_waiting_for_slow_documents(page)
            page.locator(".cm-content").click(timeout=10_000)
            assert page.title() == "clicked"
            assert page.locator(".jp-Dialog").count() == 0
        finally:
            browser.close()
