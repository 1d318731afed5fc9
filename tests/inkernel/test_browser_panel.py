"""The panel in a real browser: JupyterLab on loopback with a token, Debian's chromium driven by Playwright.

A notebook shows ``nbmcp.panel()`` and then runs a long cell; an SDK client calls a tool that needs approval
three times: the test sees each request appear in the panel, clicks Approve (the client gets the result),
clicks Deny (a declined error), and for the third sets the panel's timeout to 2 s and waits (denied).
JupyterLab 4.6 sends widget comm messages over a kernel subshell, so the clicks work while the cell runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import nbformat
import pytest
from mcp.types import Implementation

from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep_waiting_for_slow_documents_async, requires_chromium
from tests.conftest import connect, free_port
from tests.mcp_results import text_of

SCREENSHOT = "/tmp/panel.png"
BUSY_SECONDS = 3600  # longer than any run of the test: the kernel is shut down with the server
KERNEL_WORK_MS = 90_000  # what waits on a fresh kernel (imports, first widgets) on a loaded machine

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(240),
    requires_chromium,
]

SETUP_CELL = '''\
%load_ext nbmcp
import nbmcp

@nbmcp.tool(requires_approval=True)
def launch(target: str, count: int = 1) -> str:
    """Launch something: asks the notebook's owner first."""
    return f"launched {count} x {target}"

nbmcp.panel()'''
BUSY_CELL = f"import time\ntime.sleep({BUSY_SECONDS})  # a long cell: the panel must keep working"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 with a token, isolated Jupyter dirs, stopped (kernels too) afterwards."""
    base = tmp_path_factory.mktemp("lab")
    root, runtime = base / "root", base / "runtime"
    root.mkdir()
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news/update toasts over the notebook.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(BUSY_CELL)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, root / "panel.ipynb")
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
    }
    env.pop("NBMCP_TOKEN", None)
    log = open(base / "lab.log", "w")  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--allow-root",
            "--no-browser",
            f"--ServerApp.token={token}",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {(base / 'lab.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("jupyter lab did not answer within 90 s")
            time.sleep(0.2)
        yield {"url": url, "token": token, "runtime": runtime, "log": base / "lab.log"}
    finally:
        try:  # shut kernels down through the API first, then the server
            sessions = httpx.get(f"{url}/api/sessions", params={"token": token}, timeout=5).json()
            for session in sessions:
                httpx.delete(f"{url}/api/sessions/{session['id']}", params={"token": token}, timeout=10)
        except Exception:
            pass
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


async def kernel_server(lab: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """The in-kernel MCP server of the notebook's kernel: session via REST, then its connection file."""
    from nbmcp.discovery import find_server

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            response = await http.get(f"{lab['url']}/api/sessions", params={"token": lab["token"]})
            kernels = [s["kernel"]["id"] for s in response.json() if s["path"].endswith("panel.ipynb")]
            if kernels:
                try:
                    return find_server(kernels[0])
                except (LookupError, FileNotFoundError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no nbmcp server for the notebook's kernel ({kernels})")
            await anyio.sleep(0.2)


async def test_approve_deny_and_timeout_by_clicking_in_jupyterlab(
    lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.async_api import async_playwright, expect

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab["runtime"]))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            await keep_waiting_for_slow_documents_async(page)
            await page.goto(f"{lab['url']}/lab/tree/panel.ipynb?token={lab['token']}")
            await page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')")
            await page.wait_for_function(
                "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.connectionStatus"
                " === 'connected'"
            )
            # Not awaited in the page: the command's promise settles only when the long cell ends.
            await page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            panel = page.locator(".nbmcp-panel")
            await expect(panel).to_be_visible(timeout=KERNEL_WORK_MS)
            await expect(panel).to_contain_text("serving", timeout=KERNEL_WORK_MS)
            found = await kernel_server(lab)
            busy_prompt = page.locator(".jp-Cell").nth(1).locator(".jp-InputPrompt")
            await expect(busy_prompt).to_contain_text("*", timeout=KERNEL_WORK_MS)  # the long cell is running

            info = Implementation(name="browser-test-client", version="1.0")
            async with connect(found["url"], found["token"], client_info=info) as client:

                async def call(target: str) -> tuple[Any, float]:
                    started = time.perf_counter()
                    result = await client.call_tool("launch", {"target": target, "count": 3})
                    return result, time.perf_counter() - started

                # 1. Approve.
                async with anyio.create_task_group() as tg:
                    results: list[Any] = []
                    tg.start_soon(lambda: _collect(results, call("rocket")))
                    row = panel.locator(".nbmcp-approval").filter(has_text="rocket")
                    await expect(row).to_be_visible(timeout=20_000)
                    await expect(row).to_contain_text("browser-test-client")
                    await expect(row).to_contain_text("launch")
                    await page.screenshot(path=SCREENSHOT, full_page=True)
                    clicked = time.perf_counter()
                    await row.locator("button.nbmcp-approve").click()
                ((result, _),) = results
                assert not result.is_error, text_of(result)
                assert text_of(result) == "launched 3 x rocket"
                assert time.perf_counter() - clicked < 15, "the click was not handled while the cell ran"
                await expect(busy_prompt).to_contain_text("*")  # ... and the cell is still running
                await expect(row).to_have_count(0)
                await expect(panel.locator(".nbmcp-calls")).to_contain_text("launch")

                # 2. Deny.
                async with anyio.create_task_group() as tg:
                    results = []
                    tg.start_soon(lambda: _collect(results, call("probe")))
                    row = panel.locator(".nbmcp-approval").filter(has_text="probe")
                    await expect(row).to_be_visible(timeout=20_000)
                    await row.locator("button.nbmcp-deny").click()
                ((result, _),) = results
                assert result.is_error and "declined" in text_of(result), text_of(result)
                await expect(row).to_have_count(0)

                # 3. No answer: the panel's timeout set to 2 s in the page, then the request expires.
                timeout_input = panel.locator(".nbmcp-timeout input")
                await timeout_input.fill("2")
                await timeout_input.press("Enter")
                # The box sends the value to the kernel through a comm: call once the server has it.
                await expect(panel).to_contain_text("A call waits 2 s for your answer.", timeout=KERNEL_WORK_MS)
                async with anyio.create_task_group() as tg:
                    results = []
                    tg.start_soon(lambda: _collect(results, call("satellite")))
                    row = panel.locator(".nbmcp-approval").filter(has_text="satellite")
                    await expect(row).to_be_visible(timeout=20_000)
                ((result, elapsed),) = results
                assert result.is_error and "did not answer within 2 s" in text_of(result), text_of(result)
                assert 1.5 < elapsed < 20
                await expect(row).to_have_count(0)
                await expect(panel.locator(".nbmcp-calls")).to_contain_text("denied")
                await page.screenshot(path=SCREENSHOT.replace(".png", "-after.png"), full_page=True)
        finally:
            await browser.close()


async def _collect(results: list[Any], awaitable: Any) -> None:
    results.append(await awaitable)
