"""`nbmcp serve` over stdio: a real subprocess, the official SDK client, a real kernel."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import ImageContent

from tests.mcp_results import text_of

pytestmark = pytest.mark.anyio


def serve_params(*args: str, cwd: Path) -> StdioServerParameters:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "nbmcp.cli", "serve", *args], cwd=str(cwd), env=env
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[-1][:1] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
async def client(workdir: Path) -> AsyncIterator[Client]:
    params = serve_params("--notebook", str(workdir / "session.ipynb"), "--output-budget", "5000", cwd=workdir)
    async with Client(params) as c:
        yield c


async def run(client: Client, code: str, **kw: Any) -> Any:
    return await client.call_tool("execute", {"code": code, **kw})


async def test_tools_listed(client: Client) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == {
        "execute", "interrupt", "restart", "list_variables", "inspect_variable", "read_rows", "query",
        "notebook_read", "notebook_edit", "notebook_run", "task_status", "task_result", "task_cancel",
        "list_kernelspecs",
    }  # fmt: skip


async def test_execute_result_says_status_count_and_kernel(client: Client) -> None:
    result = await run(client, "1+1")
    assert not result.is_error
    assert result.content[0].text == "2"
    sc = result.structured_content
    assert sc["status"] == "ok" and isinstance(sc["execution_count"], int) and sc["truncated"] is False
    assert sc["outputs"] == [{"type": "execute_result", "mime_types": ["text/plain"], "text": "2"}]
    assert sc["kernel"]["mode"] == "started" and pid_alive(sc["kernel"]["pid"])
    assert sc["kernel"]["id"][:8] in result.content[-1].text  # the status line names the kernel


async def test_a_number_sent_as_code_runs_as_its_text(client: Client) -> None:
    # the MCP Inspector's `--tool-arg code=1` sends a JSON number
    result = await client.call_tool("execute", {"code": 1})
    assert not result.is_error, text_of(result)
    assert result.content[0].text == "1"
    assert (await client.call_tool("execute", {"code": 2.5})).content[0].text == "2.5"
    schema = next(t for t in (await client.list_tools()).tools if t.name == "execute").input_schema
    assert schema["properties"]["code"]["type"] == "string"
    assert "source text" in schema["properties"]["code"]["description"]


async def test_output_order_and_errors(client: Client) -> None:
    result = await run(client, "print('out')\nimport sys; print('err', file=sys.stderr)\n'value'")
    texts = [b.text for b in result.content]
    assert texts[:3] == ["out\n", "[stderr]\nerr\n", "'value'"]
    err = await run(client, "def f():\n    return 1/0\nf()")
    assert err.is_error and err.structured_content["status"] == "error"
    text = text_of(err)
    assert text.startswith("ZeroDivisionError: division by zero")
    assert "\x1b[" not in text and "return 1/0" in text
    assert err.structured_content["error"] == {"ename": "ZeroDivisionError", "evalue": "division by zero"}


async def test_progress_streams_before_the_result(client: Client) -> None:
    events: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((time.monotonic(), message))

    code = "import time\nfor i in range(4):\n    print(f'step {i}', flush=True)\n    time.sleep(0.3)"
    result = await client.call_tool("execute", {"code": code}, progress_callback=on_progress)
    done = time.monotonic()
    assert text_of(result).startswith("step 0\nstep 1\nstep 2\nstep 3\n")
    assert events and events[0][1] == "step 0"
    assert done - events[0][0] > 0.6  # arrived while the cell was still running
    assert events[-1][1] == "step 3"


async def test_carriage_return_progress_bars_stream_their_last_state(client: Client) -> None:
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    # a real tqdm bar: redrawn in place on stderr with \r
    code = (
        "import time\nfrom tqdm import tqdm\n"
        "for _ in tqdm(range(5), ncols=40, bar_format='{percentage:3.0f}%|{bar:5}| {n}/{total}', mininterval=0):\n"
        "    time.sleep(0.15)"
    )
    result = await client.call_tool("execute", {"code": code}, progress_callback=on_progress)
    assert not result.is_error
    assert len(messages) >= 2 and all("\r" not in (m or "") for m in messages)
    assert messages[-1] is not None and messages[-1].startswith("[stderr] 100%|") and messages[-1].endswith("5/5")
    assert "100%|" in text_of(result) and "0%|" not in text_of(result).replace("100%|", "")  # only the last state


async def test_dataframe_markdown_and_structured_rows(client: Client) -> None:
    code = "import pandas as pd\ndf = pd.DataFrame({'a': range(100), 'b': [f'r{i}' for i in range(100)]})\ndf"
    result = await run(client, code)
    assert not result.is_error
    assert result.content[0].text.startswith("| ")
    data = result.structured_content["data"]
    assert data["total_rows"] == 100 and "a" in data["columns"]
    assert {"a": 0, "b": "r0"}.items() <= data["rows"][0].items()


async def test_images_are_resized(client: Client) -> None:
    code = (
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(30, 20), dpi=100)\n"
        "plt.plot([1, 2, 3])\nplt.show()"
    )
    result = await run(client, code)
    images = [b for b in result.content if isinstance(b, ImageContent)]
    assert len(images) == 1
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert max(img.size) <= 1568
    assert result.structured_content["outputs"][0]["type"] == "display_data"


async def test_output_budget_and_full_output_resource(client: Client) -> None:
    result = await run(client, "for i in range(2000): print(f'line {i:05d} ' + 'x' * 40)")
    assert result.structured_content["truncated"] is True
    text = text_of(result)
    assert len(text) < 7000 and "line 00000" in text and "line 01999" in text
    uri = next(w for w in text.replace("]", " ").split() if w.startswith("nbmcp://outputs/"))
    full = await client.read_resource(uri)
    assert full.contents[0].text.count("\n") >= 1999


@pytest.mark.timeout(30)
async def test_timeout_interrupts_and_keeps_state(client: Client) -> None:
    started = time.monotonic()
    result = await run(client, "state = 'kept'\nprint('before', flush=True)\nimport time\ntime.sleep(60)", timeout=1)
    assert time.monotonic() - started < 2.5
    assert result.is_error and result.structured_content["status"] == "timeout"
    assert "before" in text_of(result) and "interrupted" in text_of(result)
    assert (await run(client, "state")).content[0].text == "'kept'"


@pytest.mark.timeout(30)
async def test_cancelled_request_interrupts_the_kernel(client: Client) -> None:
    code = "marker = 'started'\nprint('running', flush=True)\nimport time\ntime.sleep(60)\nmarker = 'finished'"
    with anyio.CancelScope() as scope:

        async def cancel_once_running(progress: float, total: float | None, message: str | None) -> None:
            scope.cancel()  # the cell printed: it runs; now the client gives up on the request

        with anyio.fail_after(20):
            await client.call_tool("execute", {"code": code}, progress_callback=cancel_once_running)
    assert scope.cancelled_caught
    started = time.monotonic()
    result = await run(client, "marker", timeout=10)
    assert time.monotonic() - started < 3, "the cancelled cell was not interrupted"
    assert result.content[0].text == "'started'"


@pytest.mark.timeout(30)
async def test_inspection_while_a_cell_runs(client: Client) -> None:
    # its own frame: the test must not depend on which other tests ran before it (-k)
    await run(
        client,
        "import numpy as np\nimport pandas as pd\narr = np.arange(12).reshape(3, 4)\nname = 'Ada'\n"
        "df = pd.DataFrame({'a': range(100), 'b': [f'r{i}' for i in range(100)]})",
    )
    async with anyio.create_task_group() as tg:
        running = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            running.set()

        async def busy() -> None:
            code = "print('running', flush=True)\nimport time\ntime.sleep(2)"
            await client.call_tool("execute", {"code": code}, progress_callback=on_progress)

        tg.start_soon(busy)
        with anyio.fail_after(10):
            await running.wait()
        started = time.monotonic()
        listed = await client.call_tool("list_variables", {})
        took = time.monotonic() - started
    assert took < 1.5
    variables = {v["name"]: v for v in listed.structured_content["variables"]}
    assert variables["arr"]["shape"] == [3, 4] and variables["name"]["repr"] == "'Ada'"
    assert "In" not in variables and "get_ipython" not in variables and "np" not in variables
    inspected = await client.call_tool("inspect_variable", {"name": "df"})
    assert inspected.structured_content["kind"] == "frame"
    assert inspected.structured_content["shape"] == [100, 2]
    rows = await client.call_tool("read_rows", {"name": "df", "offset": 10, "limit": 3, "columns": ["b"]})
    assert rows.structured_content["rows"] == [{"b": "r10"}, {"b": "r11"}, {"b": "r12"}]
    assert rows.structured_content["total_rows"] == 100 and "| r10 |" in text_of(rows)


async def test_invalid_arguments_name_the_argument(client: Client) -> None:
    bad_timeout = await run(client, "1", timeout=-1)
    assert bad_timeout.is_error and "timeout" in text_of(bad_timeout)
    bad_name = await client.call_tool("inspect_variable", {"name": "1+1; import os"})
    assert bad_name.is_error and "name" in text_of(bad_name)
    missing = await client.call_tool("inspect_variable", {"name": "dff"})
    assert missing.is_error and "Did you mean: df" in text_of(missing)
    bad_cols = await client.call_tool("read_rows", {"name": "df", "columns": ["nope"]})
    assert bad_cols.is_error and "columns" in text_of(bad_cols)
    bad_limit = await client.call_tool("read_rows", {"name": "df", "limit": 0})
    assert bad_limit.is_error and "limit" in text_of(bad_limit)
    not_table = await client.call_tool("read_rows", {"name": "name"})
    assert not_table.is_error and "not a table" in text_of(not_table)


async def test_notebook_files(client: Client, workdir: Path) -> None:
    created = await client.call_tool(
        "notebook_edit",
        {"path": "work.ipynb", "version": "", "operations": [{"op": "insert", "source": "x = 20\nx * 2"}]},
    )
    assert not created.is_error, text_of(created)
    read = await client.call_tool("notebook_read", {"path": "work.ipynb"})
    version, cells = read.structured_content["version"], read.structured_content["cells"]
    cell_id = cells[0]["id"]
    # someone else edits the file after we read it: our edit is refused
    nb = nbformat.read(workdir / "work.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("human edit"))
    nbformat.write(nb, workdir / "work.ipynb")
    stale = await client.call_tool(
        "notebook_edit",
        {"path": "work.ipynb", "version": version, "operations": [{"op": "delete", "cell_id": cell_id}]},
    )
    assert stale.is_error and "notebook_read" in text_of(stale)
    ran = await client.call_tool("notebook_run", {"path": "work.ipynb", "cell_ids": [cell_id]})
    assert not ran.is_error, text_of(ran)
    assert "40" in text_of(ran)
    written = nbformat.read(workdir / "work.ipynb", as_version=4)
    assert written.cells[0].outputs[0]["data"]["text/plain"] == "40"
    assert written.cells[1].source == "human edit"
    escape = await client.call_tool("notebook_read", {"path": "../outside.ipynb"})
    assert escape.is_error and "outside" in text_of(escape)
    (workdir / "link.ipynb").symlink_to("/etc/hostname")
    link = await client.call_tool("notebook_read", {"path": "link.ipynb"})
    assert link.is_error


@pytest.mark.timeout(60)
async def test_dead_kernel_then_restart(client: Client) -> None:
    started = time.monotonic()
    result = await run(client, "import os\nos._exit(1)")
    assert time.monotonic() - started < 2.0
    assert result.is_error and result.structured_content["status"] == "dead"
    assert "died" in text_of(result) and "restart()" in text_of(result)
    again = await run(client, "1")
    assert again.is_error and "died" in text_of(again)
    restarted = await client.call_tool("restart", {})
    assert not restarted.is_error and "restarted" in text_of(restarted)
    assert (await run(client, "6*7")).content[0].text == "42"


# ------------------------------------------------------------------------ separate servers


@pytest.mark.timeout(90)
async def test_session_notebook_reruns_and_kernel_gone_when_stdin_closes(tmp_path: Path) -> None:
    notebook = tmp_path / "recorded.ipynb"
    async with Client(serve_params("--notebook", str(notebook), cwd=tmp_path)) as c:
        await run(c, "import math\nvalues = [math.sqrt(i) for i in range(5)]")
        first = await run(c, "print(sum(values))\nlen(values)")
        await run(c, "1/0")
        pid = (await run(c, "import os\nos.getpid()")).structured_content["kernel"]["pid"]
    assert wait_gone(pid), "kernel still running after the client closed stdin"
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    codes = [c.source for c in nb.cells]
    assert codes[:3] == [
        "import math\nvalues = [math.sqrt(i) for i in range(5)]",
        "print(sum(values))\nlen(values)",
        "1/0",
    ]
    from nbclient import NotebookClient

    rerun = nbformat.read(notebook, as_version=4)
    NotebookClient(rerun, timeout=60, kernel_name="python3").execute()
    assert rerun.cells[1].outputs[0]["text"] == first.content[0].text
    assert rerun.cells[1].outputs[1]["data"]["text/plain"] == "5"


@pytest.mark.timeout(60)
async def test_sigterm_shuts_the_kernel_down(tmp_path: Path) -> None:
    async with Client(serve_params("--no-record", cwd=tmp_path)) as c:
        info = (await run(c, "import os\nos.getppid()")).structured_content
        kernel_pid, server_pid = info["kernel"]["pid"], int((await run(c, "os.getppid()")).content[0].text)
        os.kill(server_pid, signal.SIGTERM)
        assert wait_gone(kernel_pid), "kernel leaked after SIGTERM"
        assert wait_gone(server_pid)


@pytest.mark.timeout(60)
async def test_read_only_serves_inspection_only(tmp_path: Path) -> None:
    async with Client(serve_params("--read-only", cwd=tmp_path)) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert names == {"list_variables", "inspect_variable", "read_rows", "query", "notebook_read"}
        listed = await c.call_tool("list_variables", {})
        assert not listed.is_error and listed.structured_content["total"] == 0
        refused = await c.call_tool("execute", {"code": "1"})
        assert refused.is_error
        queried = await c.call_tool("query", {"sql": "SELECT 40 + 2 AS x"})
        assert queried.structured_content["rows"] == [{"x": 42}]
        not_saved = await c.call_tool("query", {"sql": "SELECT 1 AS x", "save_as": "x"})
        assert not_saved.is_error and "--read-only server does not do" in text_of(not_saved)
    assert not list(tmp_path.glob("*.ipynb"))  # nothing recorded


def test_config_snippets() -> None:
    from nbmcp.cli import client_config

    claude = client_config("claude")
    entry = claude["mcpServers"]["jupyter"]
    assert entry["args"][-1] == "serve" and Path(entry["command"]).exists()
    assert client_config("vscode")["servers"]["jupyter"]["type"] == "stdio"
    assert (
        json.loads(json.dumps(client_config("cursor", "nb", ["--read-only"])))["mcpServers"]["nb"]["args"][-1]
        == "--read-only"
    )


@pytest.mark.timeout(60)
async def test_jupyter_nbmcp_serve_is_the_same_command(tmp_path: Path) -> None:
    jupyter = Path(sys.executable).with_name("jupyter")
    params = StdioServerParameters(command=str(jupyter), args=["nbmcp", "serve", "--no-record"], cwd=str(tmp_path))
    async with Client(params) as client:
        result = await client.call_tool("execute", {"code": "6 * 7"})
    assert not result.is_error and "42" in text_of(result)
