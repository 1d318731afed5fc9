"""In a real browser: JupyterLab (with the nbmcp extension) driven by Playwright and Debian's chromium runs the
quickstart notebook's first cells in the page; then an SDK client outside the browser calls the tool that page's
kernel defined, through the server extension's proxy URL."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import TextContent

from nbmcp.client import connect
from tests.browser import CHROMIUM, CHROMIUM_ARGS, open_lab_notebook, requires_chromium
from tests.jupyter_helpers import JupyterProcess, jupyter_server, wait_for

QUICKSTART = Path(__file__).parents[2] / "notebooks" / "01-quickstart.ipynb"
SCREENSHOT = Path("/tmp/lab.png")

pytestmark = [
    pytest.mark.timeout(240),
    requires_chromium,
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    import nbformat

    root = tmp_path_factory.mktemp("lab-root")
    # The notebook keeps its outputs for readers; the page must show the ones this run produces.
    notebook = nbformat.read(QUICKSTART, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, root / QUICKSTART.name)
    with jupyter_server(app="lab", base_url="/user/alice/", root=root) as server:
        yield server


def in_thread(fn: Any) -> Any:
    """Run an async function on its own event loop thread (Playwright's sync API owns this thread's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn).result(timeout=120)


def test_a_tool_defined_in_the_page_is_called_from_outside(lab: JupyterProcess) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_lab_notebook(browser, f"{lab.url}lab/tree/{QUICKSTART.name}?token={lab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            # The kernel is connected when the status bar says so; before that, JupyterLab drops Shift+Enter.
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()
            # The first two code cells: `%load_ext nbmcp`, then the table and the tool (prose between them).
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            output = cells.nth(1).locator(".jp-OutputArea-output").filter(has_text="west").first
            for attempt in range(3):  # run in the page, each cell as its owner would
                for index in (0, 1):
                    cells.nth(index).locator(".jp-InputPrompt").click()
                    page.keyboard.press("Shift+Enter")
                try:
                    output.wait_for(timeout=30_000)
                    break
                except Exception:
                    page.screenshot(path=str(SCREENSHOT))  # what the page showed, for the failure report
                    if attempt == 2:
                        raise
            banner = cells.nth(0).locator(".jp-OutputArea-output").first
            assert "http://127.0.0.1:" in banner.inner_text()  # %load_ext printed how to connect
            page.screenshot(path=str(SCREENSHOT), full_page=False)
        finally:
            browser.close()

    sessions = lab.api("GET", "api/sessions").json()
    kernel_id = next(s["kernel"]["id"] for s in sessions if s["path"] == QUICKSTART.name)
    wait_for(lambda: list(lab.runtime.glob(f"nbmcp-{kernel_id}.json")), what="the page kernel's nbmcp server")

    async def call_from_outside() -> tuple[Any, Any]:
        async with connect(f"{lab.url}nbmcp/kernels/{kernel_id}/mcp", lab.token) as client:
            result = await client.call_tool("top_regions", {"n": 1})
        async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
            listing = await client.call_tool("list_notebooks", {})
        return result, listing

    result, listing = in_thread(call_from_outside)
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert not result.is_error and "west" in text and "east" not in text
    entry = next(e for e in listing.structured_content["kernels"] if e["kernel_id"] == kernel_id)
    assert entry["notebooks"] == [QUICKSTART.name] and entry["nbmcp_loaded"]
    assert SCREENSHOT.stat().st_size > 10_000
