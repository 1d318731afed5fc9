"""The assistant's code as live cells of the open notebook: a real JupyterLab with jupyter-collaboration,
a second client of the notebook's shared document (the human's tab, over the collaboration WebSocket), and
the SDK client executing through ``{base_url}nbmcp/mcp``; then the same in Debian's chromium through
Playwright, with the human typing in the page. Also the fallbacks: a notebook nobody has open, and one
closed while the cell runs, both recorded in ``<notebook>.assistant.ipynb``."""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest

from nbmcp.client import connect
from nbmcp.jupyter.live import SharedNotebooks
from tests.browser import CHROMIUM, CHROMIUM_ARGS, open_lab_notebook, requires_chromium
from tests.jupyter_helpers import JupyterProcess, jupyter_server, wait_for
from tests.mcp_results import text_of
from tests.ydoc_client import open_notebook

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

HUMAN_CELL = "total = 1 + 1"
SCREENSHOT = Path("/tmp/lab-live.png")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    root = tmp_path_factory.mktemp("live-root")
    for name in (
        "shared.ipynb",
        "closed.ipynb",
        "midway.ipynb",
        "page.ipynb",
        "rich.ipynb",
        "edit.ipynb",
        "disk.ipynb",
    ):
        cells = [nbformat.v4.new_code_cell(HUMAN_CELL), nbformat.v4.new_code_cell("print(total)")]
        kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernelspec}), root / name)
    # a room nobody has open is dropped soon (default: a minute), so the closed-midway test need not wait
    with jupyter_server(app="lab", root=root, extra_args=["--YDocExtension.document_cleanup_delay=0.3"]) as server:
        yield server


def open_kernel(lab: JupyterProcess, path: str) -> str:
    """Start ``path``'s kernel as JupyterLab does when the human opens it; wait until it answers (on a
    loaded machine a kernel still importing ipykernel misses heartbeats and looks dead to a new client)."""
    from jupyter_client import BlockingKernelClient

    kernel_id = lab.start_notebook_kernel(path)
    client = BlockingKernelClient(connection_file=str(lab.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    try:  # not wait_for_ready(): it gives up when a heartbeat is late, which a loaded machine makes them
        msg_id = client.kernel_info()
        while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
    finally:
        client.stop_channels()
    return kernel_id


def gated(release: Path, marker: str) -> str:
    """Code that prints ``marker``, then a tick every 20 ms until ``release`` exists (bounded), then 6*7."""
    return (
        "import os, time\n"
        f"print({marker!r}, flush=True)\n"
        "deadline = time.time() + 30\n"
        f"while not os.path.exists({str(release)!r}) and time.time() < deadline:\n"
        "    print('.', end='', flush=True)\n"
        "    time.sleep(0.02)\n"
        "print()\n"
        "6 * 7"
    )


def assistant_cells(notebook: Any) -> list[dict[str, Any]]:
    return [c for c in notebook.get()["cells"] if (c.get("metadata") or {}).get("nbmcp", {}).get("author")]


async def poll(predicate: Any, timeout: float = 20, what: str = "condition") -> Any:
    """Poll ``predicate()`` on the event loop (the shared document syncs in the background) until truthy."""
    with anyio.fail_after(timeout):
        while not (value := predicate()):
            await anyio.sleep(0.01)
    return value


async def test_the_assistants_cell_streams_into_the_open_notebook_beside_the_humans_edits(
    lab: JupyterProcess, tmp_path: Path
) -> None:
    open_kernel(lab, "shared.ipynb")
    release = tmp_path / "release"
    async with open_notebook(lab.url, lab.token, "shared.ipynb") as (notebook, _room):
        assert notebook.cell_number == 2
        async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client, anyio.create_task_group() as tg:
            results: list[Any] = []

            async def call() -> None:
                args = {"code": gated(release, "from the assistant"), "notebook": "shared.ipynb"}
                results.append(await client.call_tool("execute", args))

            tg.start_soon(call)
            # the cell is there, marked, and its first output streamed in while the code still runs
            cells = await poll(lambda: assistant_cells(notebook), what="the assistant's cell")
            await poll(lambda: "from the assistant" in str(assistant_cells(notebook)[0]["outputs"]))
            assert not results
            cell = assistant_cells(notebook)[0]
            assert cells[0]["source"] == gated(release, "from the assistant")
            assert cell["metadata"]["nbmcp"]["author"] == "assistant"
            assert cell["metadata"]["nbmcp"]["kernel_id"]
            assert notebook.ycells[2]["execution_state"] == "running"
            # the human types in their own cell while the assistant's output streams into the document
            human = notebook.ycells[0]["source"]
            for word in (" # the", " human", " typed", " this"):
                streamed = len(notebook.get_cell(2)["outputs"][0]["text"])
                human.insert(len(human), word)
                await poll(lambda n=streamed: len(notebook.get_cell(2)["outputs"][0]["text"]) > n)
            release.touch()
        (result,) = results
        assert not result.is_error and "42" in text_of(result), text_of(result)
        await poll(lambda: notebook.ycells[2]["execution_state"] == "idle")
        final = notebook.get()["cells"]
        assert final[0]["source"] == HUMAN_CELL + " # the human typed this"
        assert final[2]["execution_count"] >= 1
        assert final[2]["outputs"][0]["text"].startswith("from the assistant\n.")
        assert final[2]["outputs"][-1]["data"]["text/plain"] == "42"

        # the collaboration layer saves the document (after its save delay), both sides' text in it
        def saved() -> Any:
            try:
                cells = nbformat.read(lab.root / "shared.ipynb", as_version=4).cells
            except ValueError:  # read while Jupyter writes it
                return False
            return len(cells) == 3 and cells[0].source.endswith("human typed this") and cells[2].outputs and cells

        cells = await poll(saved, what="the notebook saved with the assistant's cell")
        assert cells[2].metadata["nbmcp"]["author"] == "assistant"
    # nothing went to the recording
    assert not (lab.root / "shared.assistant.ipynb").exists()


async def test_a_notebook_nobody_has_open_gets_the_recording(lab: JupyterProcess) -> None:
    open_kernel(lab, "closed.ipynb")
    async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
        result = await client.call_tool("execute", {"code": "print('nobody looks')", "notebook": "closed.ipynb"})
    assert not result.is_error, text_of(result)
    recording = lab.root / "closed.assistant.ipynb"
    wait_for(recording.exists, what="the recording")
    cells = nbformat.read(recording, as_version=4).cells
    assert cells[-1].source == "print('nobody looks')" and cells[-1].outputs[0].text == "nobody looks\n"
    assert len(nbformat.read(lab.root / "closed.ipynb", as_version=4).cells) == 2  # the notebook untouched


async def test_a_notebook_closed_while_the_cell_runs_keeps_the_cell_in_the_recording(
    lab: JupyterProcess, tmp_path: Path
) -> None:
    open_kernel(lab, "midway.ipynb")
    release = tmp_path / "release"
    async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def call() -> None:
            args = {"code": gated(release, "closing"), "notebook": "midway.ipynb"}
            results.append(await client.call_tool("execute", args))

        async with open_notebook(lab.url, lab.token, "midway.ipynb") as (notebook, room):
            tg.start_soon(call)
            await poll(lambda: "closing" in str(assistant_cells(notebook)))
        # the human closed the notebook: the server drops its room; then the cell ends
        wait_for(lambda: f"Room {room} deleted" in lab.log.read_text(errors="replace"), what="the room dropped")
        release.touch()
    (result,) = results
    assert not result.is_error and "42" in text_of(result), text_of(result)
    recording = lab.root / "midway.assistant.ipynb"
    wait_for(recording.exists, what="the recording")
    cell = nbformat.read(recording, as_version=4).cells[-1]
    assert cell.source == gated(release, "closing")
    assert cell.outputs[0].text.startswith("closing\n") and cell.outputs[-1].data["text/plain"] == "42"


async def test_without_collaboration_there_is_no_shared_document() -> None:
    notebooks = SharedNotebooks({})  # a Jupyter Server without jupyter_server_ydoc in its settings
    assert not notebooks.available
    assert await notebooks.document("analysis.ipynb") is None


async def test_rich_outputs_reach_the_live_cell_while_the_cell_still_runs(lab: JupyterProcess, tmp_path: Path) -> None:
    open_kernel(lab, "rich.ipynb")
    release = tmp_path / "release"
    code = (
        "import os, time\n"
        "from IPython.display import HTML, display\n"
        "display(HTML('<b>shown at once</b>'))\n"
        "deadline = time.time() + 30\n"
        f"while not os.path.exists({str(release)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.02)\n"  # silent: no stream text that would carry the display along with it
        "raise ValueError('after the release')"
    )
    async with open_notebook(lab.url, lab.token, "rich.ipynb") as (notebook, _room):
        async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client, anyio.create_task_group() as tg:
            results: list[Any] = []

            async def call() -> None:
                results.append(await client.call_tool("execute", {"code": code, "notebook": "rich.ipynb"}))

            tg.start_soon(call)
            outputs = await poll(lambda: (assistant_cells(notebook) or [{}])[0].get("outputs"), what="the display")
            assert not results  # the call has not returned: the display came live, not with the result
            assert outputs[0]["output_type"] == "display_data"
            assert outputs[0]["data"]["text/html"] == "<b>shown at once</b>"
            release.touch()
        (result,) = results
        assert result.is_error and "after the release" in text_of(result), text_of(result)
        await poll(lambda: notebook.ycells[2]["execution_state"] == "idle")
        outputs = notebook.get_cell(2)["outputs"]
        assert [o["output_type"] for o in outputs] == ["display_data", "error"]
        assert outputs[1]["ename"] == "ValueError"


async def test_notebook_edit_and_run_go_through_the_open_notebooks_shared_document(lab: JupyterProcess) -> None:
    open_kernel(lab, "edit.ipynb")
    before = (lab.root / "edit.ipynb").read_bytes()
    async with open_notebook(lab.url, lab.token, "edit.ipynb") as (notebook, _room):
        async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
            human = notebook.ycells[0]["source"]
            human.insert(len(human), " # unsaved")  # the human's edit, only in the document so far
            read = await poll_read(client, "edit.ipynb", "unsaved")
            assert read.structured_content["live"] is True
            first, second = (c["id"] for c in read.structured_content["cells"])

            bad = await client.call_tool(
                "notebook_edit",
                {"path": "edit.ipynb", "version": "", "operations": [{"op": "delete", "cell_id": "nope"}]},
            )
            assert bad.is_error and "operations: unknown cell id" in text_of(bad), text_of(bad)
            assert notebook.cell_number == 2  # all or nothing: the document is untouched

            ops = [
                {"op": "replace", "cell_id": second, "source": "print(total * 2)"},
                {"op": "insert", "after": second, "source": "answer = 6 * 7\nanswer"},
            ]
            edited = await client.call_tool("notebook_edit", {"path": "edit.ipynb", "version": "", "operations": ops})
            assert not edited.is_error, text_of(edited)
            (new,) = edited.structured_content["inserted"]
            await poll(lambda: notebook.cell_number == 3)
            cells = notebook.get()["cells"]
            assert [c["source"] for c in cells] == [
                HUMAN_CELL + " # unsaved",
                "print(total * 2)",
                "answer = 6 * 7\nanswer",
            ]
            assert cells[1]["metadata"]["nbmcp"]["author"] == cells[2]["metadata"]["nbmcp"]["author"] == "assistant"
            assert cells[2]["id"] == new
            # nothing wrote the file behind the document: it is as it was, or as the collaboration layer saved it
            on_disk = (lab.root / "edit.ipynb").read_bytes()
            assert on_disk == before or b"# unsaved" in on_disk

            ran = await client.call_tool("notebook_run", {"path": "edit.ipynb", "cell_ids": [first, second, new]})
            assert not ran.is_error, text_of(ran)
            assert [r["status"] for r in ran.structured_content["results"]] == ["ok", "ok", "ok"]

            def ran_here() -> Any:  # the server's document has the outputs; this client's copy syncs after it
                cells = notebook.get()["cells"]
                return all(c["outputs"] and c["execution_count"] for c in cells[1:]) and cells

            cells = await poll(ran_here, what="the run's outputs in this client's copy of the document")
            assert cells[1]["outputs"][0]["text"] == "4\n"
            assert cells[2]["outputs"][0]["data"]["text/plain"] == "42"
            assert cells[2]["execution_count"] > cells[1]["execution_count"] >= 1
            assert cells[0]["metadata"]["nbmcp"]["ran_by"] == "assistant"

            failing = await client.call_tool("notebook_run", {"path": "edit.ipynb", "cell_ids": ["nope"]})
            assert failing.is_error and "cell_ids: unknown cell id" in text_of(failing), text_of(failing)

        # the collaboration layer saves the document: the human's unsaved text and the assistant's cells together
        def saved() -> Any:
            try:
                cells = nbformat.read(lab.root / "edit.ipynb", as_version=4).cells
            except ValueError:  # read while Jupyter writes it
                return False
            return len(cells) == 3 and cells[0].source.endswith("# unsaved") and cells[2].outputs and cells

        cells = await poll(saved, what="the notebook saved")
        assert cells[1].source == "print(total * 2)" and cells[2].metadata["nbmcp"]["author"] == "assistant"
    assert not (lab.root / "edit.assistant.ipynb").exists()


async def poll_read(client: Any, path: str, wanted: str) -> Any:
    """notebook_read until its text contains ``wanted`` (the human's edit reaches the server's document)."""
    with anyio.fail_after(20):
        while wanted not in text_of(result := await client.call_tool("notebook_read", {"path": path})):
            await anyio.sleep(0.02)
    return result


async def test_notebook_edit_and_run_of_a_notebook_nobody_has_open_write_the_file(lab: JupyterProcess) -> None:
    open_kernel(lab, "disk.ipynb")
    async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
        read = await client.call_tool("notebook_read", {"path": "disk.ipynb"})
        assert "live" not in read.structured_content, read.structured_content
        version, cells = read.structured_content["version"], read.structured_content["cells"]
        ops = [{"op": "insert", "source": "print('on disk')"}]
        edited = await client.call_tool("notebook_edit", {"path": "disk.ipynb", "version": version, "operations": ops})
        assert not edited.is_error, text_of(edited)
        (new,) = edited.structured_content["inserted"]
        stale = await client.call_tool("notebook_edit", {"path": "disk.ipynb", "version": version, "operations": ops})
        assert stale.is_error and "notebook_read again" in text_of(stale)
        outside = await client.call_tool("notebook_run", {"path": "../elsewhere.ipynb"})
        assert outside.is_error and "outside the notebook root" in text_of(outside), text_of(outside)
        ran = await client.call_tool("notebook_run", {"path": "disk.ipynb", "cell_ids": [cells[0]["id"], new]})
        assert not ran.is_error, text_of(ran)
    saved = nbformat.read(lab.root / "disk.ipynb", as_version=4).cells
    assert saved[2].source == "print('on disk')" and saved[2].outputs[0].text == "on disk\n"


def in_thread(fn: Any) -> concurrent.futures.Future[Any]:
    """Run an async function on its own event loop thread (Playwright's sync API owns this thread's loop)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(anyio.run, fn)
    pool.shutdown(wait=False)
    return future


@requires_chromium
@pytest.mark.timeout(180)
def test_in_the_page_the_cell_and_its_output_appear_while_the_human_types(lab: JupyterProcess, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    release = tmp_path / "release"
    typed = " # typed by the human while the assistant ran"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_lab_notebook(browser, f"{lab.url}lab/tree/page.ipynb?token={lab.token}")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            cells.first.wait_for()
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the page's kernel is up
            editor = cells.first.locator(".cm-content")
            editor.click()
            page.keyboard.press("End")

            ready, go, started = threading.Event(), threading.Event(), []

            async def execute() -> Any:
                async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
                    # an assistant already connected to the notebook's kernel: what is timed is one execute
                    await client.call_tool("list_variables", {"notebook": "page.ipynb"})
                    ready.set()
                    await anyio.to_thread.run_sync(go.wait, 60)
                    started.append(time.monotonic())
                    args = {"code": gated(release, "hello from the assistant"), "notebook": "page.ipynb"}
                    return await client.call_tool("execute", args)

            async def server_side() -> list[dict[str, Any]]:
                async with open_notebook(lab.url, lab.token, "page.ipynb") as (notebook, _):
                    return notebook.get()["cells"]

            call = in_thread(execute)
            assert ready.wait(60)
            go.set()
            assistant = cells.filter(has_text="hello from the assistant")
            # the new cell and its first output are in the page within a second of the call
            assistant.locator(".jp-OutputArea-output").first.wait_for(timeout=5000)
            shown = time.monotonic() - started[0]
            expect(cells).to_have_count(3)
            expect(assistant.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\*\]"))
            page.keyboard.type(typed, delay=15)  # the human keeps typing in their cell meanwhile
            release.touch()
            result = call.result(timeout=60)
            returned = time.monotonic()
            assistant.locator(".jp-OutputArea-output").filter(has_text="42").wait_for(timeout=5000)
            final = time.monotonic() - returned
            page.screenshot(path=str(SCREENSHOT))
            expect(editor).to_have_text(HUMAN_CELL + typed)
            expect(assistant.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
            # and the server's document (what the collaboration layer saves) has both sides' text
            saved = in_thread(server_side).result(timeout=60)
            # the human does not want it: the assistant's cell is an ordinary cell, deleted as any other
            assistant.locator(".jp-InputPrompt").click()
            page.keyboard.press("Escape")
            page.keyboard.press("d")
            page.keyboard.press("d")
            expect(cells).to_have_count(2)
            after = in_thread(server_side).result(timeout=60)
        finally:
            browser.close()
    assert not result.is_error and "42" in text_of(result), text_of(result)
    assert shown < 1.0 and final < 1.0, (shown, final)
    assert saved[0]["source"] == HUMAN_CELL + typed
    assert saved[2]["metadata"]["nbmcp"]["author"] == "assistant" and saved[2]["outputs"][-1]["data"]
    assert [c["source"] for c in after] == [HUMAN_CELL + typed, "print(total)"]
