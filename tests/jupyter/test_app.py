"""The Jupyter Server extension end to end: a real `jupyter server` under a non-root base_url, real notebook
kernels started through its REST API, the SDK client through `{base_url}nbmcp/mcp` and
`{base_url}nbmcp/kernels/{kernel_id}/mcp`, in both protocol eras."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from nbmcp.client import connect
from nbmcp.jupyter.kernels import recording_path
from tests.jupyter_helpers import JupyterProcess, jupyter_server, wait_for
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

BASE_URL = "/user/alice/"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def js() -> Iterator[JupyterProcess]:
    with jupyter_server(base_url=BASE_URL) as server:
        yield server


@pytest.fixture(scope="module")
def kernels(js: JupyterProcess) -> dict[str, str]:
    """Two notebooks open on two kernels, as JupyterLab would open them."""
    (js.root / "work").mkdir()
    return {
        "work/analysis.ipynb": js.start_notebook_kernel("work/analysis.ipynb"),
        "report.ipynb": js.start_notebook_kernel("report.ipynb"),
    }


async def notebook_cell(js: JupyterProcess, kernel_id: str, code: str) -> None:
    """Run a cell the way the notebook's own frontend does: through the server's kernel WebSocket."""
    from nbmcp.serve.kernel.session import KernelSession

    session = await KernelSession.remote(js.url, js.token, kernel_id=kernel_id)
    try:
        outcome = await session.execute(code, timeout=60)
        assert outcome.status == "ok", outcome.error
    finally:
        await session.shutdown()  # an attached remote kernel is never shut down, only disconnected


def run_in_notebook(js: JupyterProcess, kernel_id: str, code: str) -> None:
    anyio.run(notebook_cell, js, kernel_id, code)


# -- Jupyter's auth and the base_url ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["nbmcp/mcp", "nbmcp/kernels/abc/mcp"])
def test_requests_without_the_jupyter_token_are_refused(js: JupyterProcess, path: str) -> None:
    url = js.url + path
    for headers, says in (({}, "no token was sent"), ({"Authorization": "Bearer wrong-token"}, "refused the token")):
        response = httpx.post(url, json=INIT, headers={**MCP_HEADERS, **headers}, trust_env=False)
        assert response.status_code == 403, response.text
        assert "mcp-session-id" not in response.headers
        # what to send, not Jupyter's "'_xsrf' argument missing" or a bare "Forbidden"
        assert says in response.json()["message"] and "Authorization: Bearer" in response.json()["message"]
    assert httpx.get(url, headers=MCP_HEADERS, trust_env=False).status_code == 403
    assert httpx.delete(url, headers=MCP_HEADERS, trust_env=False).status_code == 403


def test_with_the_token_the_sdk_app_answers_under_the_base_url(js: JupyterProcess) -> None:
    response = httpx.post(
        js.url + "nbmcp/mcp",
        json=INIT,
        headers={**MCP_HEADERS, "Authorization": f"Bearer {js.token}"},
        trust_env=False,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers.get("mcp-session-id")  # the SDK's session header passes through
    assert '"serverInfo"' in response.text and "nbmcp-jupyter" in response.text
    # Not at the server root: everything lives under base_url.
    root = f"http://127.0.0.1:{js.url.split(':')[2].split('/')[0]}/nbmcp/mcp"
    assert httpx.post(root, json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False).status_code == 404


# -- nbmcp/mcp: notebooks, kernels and serve's tools -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_list_notebooks_says_which_notebook_is_which_kernel(
    js: JupyterProcess, kernels: dict[str, str], mode: str
) -> None:
    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"list_notebooks", "execute", "interrupt", "list_variables", "inspect_variable", "read_rows"} <= names
        result = await client.call_tool("list_notebooks", {})
    assert not result.is_error
    by_id = {e["kernel_id"]: e for e in result.structured_content["kernels"]}
    for path, kernel_id in kernels.items():
        assert by_id[kernel_id]["notebooks"] == [path]
        assert f"{path}: kernel {kernel_id}" in text_of(result)


@pytest.mark.parametrize("mode", MODES)
async def test_execute_runs_in_the_notebooks_own_kernel(js: JupyterProcess, kernels: dict[str, str], mode: str) -> None:
    kernel_id = kernels["work/analysis.ipynb"]
    await notebook_cell(js, kernel_id, "shared = 7")  # the human's cell
    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        result = await client.call_tool("execute", {"code": "shared * 6", "notebook": "work/analysis.ipynb"})
        assert not result.is_error, text_of(result)
        assert "42" in text_of(result)
        assert result.structured_content["kernel"]["id"] == kernel_id
        assert result.structured_content["notebooks"] == ["work/analysis.ipynb"]
        # The other notebook's kernel does not have it: state is per notebook.
        other = await client.call_tool("execute", {"code": "shared", "notebook": "report.ipynb"})
        assert other.is_error and "NameError" in text_of(other)
        # A bare file name or the kernel id select the same kernel.
        by_name = await client.call_tool("execute", {"code": "shared + 1", "notebook": "analysis.ipynb"})
        by_id = await client.call_tool("execute", {"code": "shared + 2", "notebook": kernel_id})
        assert "8" in text_of(by_name) and "9" in text_of(by_id)
        # A number sent as code (the MCP Inspector's --tool-arg code=1) runs as its text.
        number = await client.call_tool("execute", {"code": 41, "notebook": "analysis.ipynb"})
        assert not number.is_error and "41" in text_of(number)


async def test_what_the_assistant_runs_is_recorded_beside_the_notebook(
    js: JupyterProcess, kernels: dict[str, str]
) -> None:
    import nbformat

    code = "recorded_value = 'kept by the recorder'\nrecorded_value"
    async with connect(js.url + "nbmcp/mcp", js.token) as client:
        result = await client.call_tool("execute", {"code": code, "notebook": "work/analysis.ipynb"})
        assert not result.is_error, text_of(result)
    path = js.root / "work" / "analysis.assistant.ipynb"

    def recorded_cell() -> object:
        if not path.exists():
            return None
        return next((c for c in nbformat.read(path, as_version=4).cells if c.source == code), None)

    # Written behind, off the call's path: wait (bounded) for the file to show the cell.
    cell = wait_for(recorded_cell, what="the recorded notebook")
    nbformat.validate(nbformat.read(path, as_version=4))
    assert cell.outputs[0]["data"]["text/plain"] == "'kept by the recorder'"


async def test_a_session_path_outside_the_root_is_recorded_inside_it(js: JupyterProcess) -> None:
    import nbformat

    # Jupyter's sessions API keeps whatever path a client renames a session to; the recording must not
    # follow it out.
    outside = js.root.parent / "escape"
    kernel_id = js.start_notebook_kernel("renamed.ipynb")
    session = next(s for s in js.api("GET", "api/sessions").json() if s["kernel"]["id"] == kernel_id)
    renamed = js.api("PATCH", f"api/sessions/{session['id']}", json={"path": "../escape/evil.ipynb"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["path"] == "../escape/evil.ipynb"
    try:
        async with connect(js.url + "nbmcp/mcp", js.token) as client:
            result = await client.call_tool("execute", {"code": "'confined'", "notebook": kernel_id})
            assert not result.is_error, text_of(result)
        inside = js.root / f"nbmcp-session-{kernel_id[:8]}.assistant.ipynb"

        def recorded() -> object:
            if not inside.exists():
                return None
            return next((c for c in nbformat.read(inside, as_version=4).cells if c.source == "'confined'"), None)

        wait_for(recorded, what="the recording inside the root")
        assert not outside.exists()
    finally:
        js.api("DELETE", f"api/kernels/{kernel_id}")


def recording_path_cases(root: Path) -> None:
    (root / "sub").mkdir()
    (root.parent / "elsewhere").mkdir(exist_ok=True)
    (root / "sub" / "link").symlink_to(root.parent / "elsewhere")


def test_recording_paths_stay_in_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    recording_path_cases(root)
    own = root.resolve() / "nbmcp-session-abcdef12.assistant.ipynb"
    assert recording_path(root, "abcdef1234", ["sub/a.ipynb"]) == root.resolve() / "sub" / "a.assistant.ipynb"
    assert recording_path(root, "abcdef1234", []) == own
    for escaping in ["../a.ipynb", "/tmp/a.ipynb", "sub/link/a.ipynb", "sub/../../a.ipynb"]:
        assert recording_path(root, "abcdef1234", [escaping]) == own, escaping


# -- request bodies: bounded before they are read --------------------------------------------------


def raw_request(js: JupyterProcess, head: str, body: bytes = b"", *, timeout: float = 20) -> bytes:
    """Send ``head`` (and ``body``) on a fresh connection; what the server answers before it closes."""
    port = int(js.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        answer = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                    break
        return answer


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


@pytest.mark.parametrize("path", ["nbmcp/mcp", "nbmcp/kernels/abc/mcp"])
def test_a_body_declared_larger_than_an_mcp_message_is_refused_before_it_is_read(js: JupyterProcess, path: str) -> None:
    head = (
        f"POST {BASE_URL}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {js.token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
    )
    # Only the headers are sent: a server that waits for the 100 MB body never answers.
    answer = raw_request(js, head, b'{"jsonrpc": "2.0", ')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 4 MiB" in answer


def test_a_chunked_body_is_cut_off_at_the_limit(js: JupyterProcess) -> None:
    head = (
        f"POST {BASE_URL}nbmcp/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {js.token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    before = rss_kib(js.proc.pid)
    port = int(js.url.split(":")[2].split("/")[0])
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(64):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += 1
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            answer = sock.recv(65536)
    assert sent < 64 or answer.startswith(b"HTTP/1.1 4"), "64 MiB were accepted"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert rss_kib(js.proc.pid) - before < 40 * 1024
    # The server goes on serving.
    response = httpx.post(js.url + "nbmcp/mcp", json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False)
    assert response.status_code == 200


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_client_before_the_result(
    js: JupyterProcess, kernels: dict[str, str], mode: str
) -> None:
    """SSE through the Tornado forwarder is streamed, not buffered."""
    code = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"
    seen: list[tuple[float, str | None]] = []
    started = time.monotonic()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic() - started, message))

    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        result = await client.call_tool(
            "execute", {"code": code, "notebook": "report.ipynb"}, progress_callback=on_progress
        )
    finished = time.monotonic() - started
    assert not result.is_error and "first\nsecond" in text_of(result)
    assert seen, "no progress notification arrived"
    first_at, message = seen[0]
    assert "first" in (message or "")
    assert first_at < finished - 1.0, f"progress at {first_at:.2f}s, result at {finished:.2f}s: buffered"


@pytest.mark.parametrize("mode", MODES)
async def test_inspection_tools_on_a_notebooks_frame(js: JupyterProcess, kernels: dict[str, str], mode: str) -> None:
    await notebook_cell(
        js,
        kernels["report.ipynb"],
        "import pandas as pd\nsales = pd.DataFrame({'region': list('abcde'), 'n': range(5)})",
    )
    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        variables = await client.call_tool("list_variables", {"notebook": "report.ipynb"})
        assert "sales: pandas.DataFrame 5x2" in text_of(variables)
        described = await client.call_tool("inspect_variable", {"name": "sales", "notebook": "report.ipynb"})
        assert "region" in text_of(described) and not described.is_error
        rows = await client.call_tool(
            "read_rows", {"name": "sales", "notebook": "report.ipynb", "offset": 3, "limit": 2}
        )
        assert rows.structured_content["rows"] == [{"region": "d", "n": 3}, {"region": "e", "n": 4}]
        assert rows.structured_content["total_rows"] == 5


async def test_bad_notebook_names_list_what_exists(js: JupyterProcess, kernels: dict[str, str]) -> None:
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        unknown = await client.call_tool("execute", {"code": "1", "notebook": "nope.ipynb"})
        assert unknown.is_error
        assert "no notebook or kernel 'nope.ipynb'" in text_of(unknown)
        for path, kernel_id in kernels.items():
            assert path in text_of(unknown) and kernel_id in text_of(unknown)
        ambiguous = await client.call_tool("list_variables", {})  # two kernels run: which one?
        assert ambiguous.is_error and "several kernels" in text_of(ambiguous)
        assert all(path in text_of(ambiguous) for path in kernels)


async def test_timeout_interrupts_the_notebook_kernel_and_keeps_its_state(
    js: JupyterProcess, kernels: dict[str, str]
) -> None:
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        await client.call_tool("execute", {"code": "kept = 'yes'", "notebook": "report.ipynb"})
        started = time.monotonic()
        slow = await client.call_tool(
            "execute", {"code": "import time; time.sleep(60)", "notebook": "report.ipynb", "timeout": 1}
        )
        assert time.monotonic() - started < 10
        assert slow.is_error and slow.structured_content["status"] == "timeout"
        after = await client.call_tool("execute", {"code": "kept", "notebook": "report.ipynb"})
        assert "yes" in text_of(after)


async def test_a_kernel_restarted_by_the_human_is_reattached(js: JupyterProcess, kernels: dict[str, str]) -> None:
    kernel_id = kernels["work/analysis.ipynb"]
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        before = await client.call_tool("execute", {"code": "import os; os.getpid()", "notebook": kernel_id})
        assert js.api("POST", f"api/kernels/{kernel_id}/restart").status_code == 200
        after = await client.call_tool("execute", {"code": "import os; os.getpid()", "notebook": kernel_id})
        assert not after.is_error, text_of(after)
        assert after.structured_content["kernel"]["pid"] != before.structured_content["kernel"]["pid"]
        gone = await client.call_tool("execute", {"code": "shared", "notebook": kernel_id})
        assert "NameError" in text_of(gone)  # a fresh kernel, as the human asked


# -- nbmcp/kernels/{id}/mcp: the in-kernel server behind the Jupyter Server -------------------------


def kernel_mcp(js: JupyterProcess, kernel_id: str) -> str:
    return f"{js.url}nbmcp/kernels/{kernel_id}/mcp"


def test_unknown_kernel_id_lists_the_kernels(js: JupyterProcess, kernels: dict[str, str]) -> None:
    response = httpx.post(
        kernel_mcp(js, "0000-no-such"), json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False
    )
    assert response.status_code == 404
    message = response.json()["message"]
    assert "no kernel '0000-no-such'" in message
    assert all(k in message for k in kernels.values()) and "work/analysis.ipynb" in message


def test_a_kernel_without_nbmcp_says_to_load_it(js: JupyterProcess, kernels: dict[str, str]) -> None:
    kernel_id = kernels["report.ipynb"]
    response = httpx.post(kernel_mcp(js, kernel_id), json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False)
    assert response.status_code == 404
    assert "%load_ext nbmcp" in response.json()["message"] and "report.ipynb" in response.json()["message"]


@pytest.fixture(scope="module")
def loaded(js: JupyterProcess, kernels: dict[str, str]) -> str:
    """work/analysis.ipynb runs `%load_ext nbmcp` and defines a tool, in its own kernel."""
    kernel_id = js.start_notebook_kernel("served.ipynb")
    run_in_notebook(
        js,
        kernel_id,
        "%load_ext nbmcp\n"
        "import asyncio, nbmcp\n"
        "@nbmcp.tool\n"
        "def double(x: int) -> int:\n"
        "    '''Twice x.'''\n"
        "    return 2 * x\n"
        "@nbmcp.tool\n"
        "async def slow(ctx: nbmcp.Context) -> str:\n"
        "    await ctx.report_progress(1, 2, 'half way')\n"
        "    await asyncio.sleep(1.5)\n"
        "    return 'done'\n",
    )
    return kernel_id


@pytest.mark.parametrize("mode", MODES)
async def test_in_kernel_tools_through_the_proxy(js: JupyterProcess, loaded: str, mode: str) -> None:
    async with connect(kernel_mcp(js, loaded), js.token, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "double" in tools and tools["double"].description.startswith("Twice x")
        result = await client.call_tool("double", {"x": 21})
        assert not result.is_error and "42" in text_of(result)
    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        listing = await client.call_tool("list_notebooks", {})
    entry = next(e for e in listing.structured_content["kernels"] if e["kernel_id"] == loaded)
    assert entry["nbmcp_loaded"] and entry["mcp_path"] == f"{BASE_URL}nbmcp/kernels/{loaded}/mcp"


@pytest.mark.parametrize("mode", MODES)
async def test_in_kernel_progress_streams_through_the_proxy(js: JupyterProcess, loaded: str, mode: str) -> None:
    seen: list[float] = []
    started = time.monotonic()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(time.monotonic() - started)

    async with connect(kernel_mcp(js, loaded), js.token, mode=mode) as client:
        result = await client.call_tool("slow", {}, progress_callback=on_progress)
    finished = time.monotonic() - started
    assert "done" in text_of(result)
    assert seen and seen[0] < finished - 1.0, f"progress at {seen}, result at {finished:.2f}s"


def test_a_dead_in_kernel_server_is_a_502_not_a_hang(js: JupyterProcess, kernels: dict[str, str]) -> None:
    kernel_id = js.start_notebook_kernel("dead.ipynb")
    # The in-kernel server stops listening but its connection file stays behind (as after a crash).
    run_in_notebook(
        js,
        kernel_id,
        "%load_ext nbmcp\nimport nbmcp.inkernel.lifecycle\nnbmcp.inkernel.lifecycle.current_server().running.stop()",
    )
    wait_for(lambda: list(js.runtime.glob(f"nbmcp-{kernel_id}.json")), what="connection file")
    started = time.monotonic()
    response = httpx.post(
        kernel_mcp(js, kernel_id), json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False, timeout=30
    )
    assert time.monotonic() - started < 6
    assert response.status_code == 502
    message = response.json()["message"]
    assert "is not answering" in message and "dead.ipynb" in message and "%mcp start" in message


async def test_a_rotated_in_kernel_token_is_picked_up_by_the_proxy(js: JupyterProcess, loaded: str) -> None:
    """The proxy keeps each kernel's connection info between requests; a rewritten file replaces it."""
    async with connect(kernel_mcp(js, loaded), js.token, mode="legacy") as client:
        assert "42" in text_of(await client.call_tool("double", {"x": 21}))
    await notebook_cell(js, loaded, "%mcp token --rotate")
    async with connect(kernel_mcp(js, loaded), js.token, mode="legacy") as client:
        result = await client.call_tool("double", {"x": 4})
    assert not result.is_error and "8" in text_of(result)


async def test_proxied_requests_keep_jupyters_request_metrics_and_failure_log(js: JupyterProcess, loaded: str) -> None:
    """Successes skip formatting a debug line nobody reads (tests/jupyter/test_access_log.py: at debug level they
    are logged); the request metrics still count them, and refused or failed requests are logged as before."""
    async with connect(kernel_mcp(js, loaded), js.token, mode="legacy") as client:
        await client.call_tool("double", {"x": 1})
    refused = httpx.post(kernel_mcp(js, loaded), json=INIT, headers=MCP_HEADERS, trust_env=False)
    assert refused.status_code == 403
    unknown = httpx.post(kernel_mcp(js, "0000-gone"), json=INIT, headers={**MCP_HEADERS, **js.headers}, trust_env=False)
    assert unknown.status_code == 404
    metrics = js.api("GET", "metrics")
    assert metrics.status_code == 200
    counted = [
        line
        for line in metrics.text.splitlines()
        if line.startswith("http_request_duration_seconds_count")
        and 'handler="nbmcp.jupyter.forward.KernelMCPHandler"' in line
        and 'method="POST"' in line
        and 'status_code="200"' in line
    ]
    assert counted and float(counted[0].split()[-1]) >= 1
    log = js.log.read_text(errors="replace")
    assert f"403 POST {BASE_URL}nbmcp/kernels/{loaded}/mcp" in log
    assert f"404 POST {BASE_URL}nbmcp/kernels/0000-gone/mcp" in log
    assert f"200 POST {BASE_URL}nbmcp/kernels/{loaded}/mcp" not in log  # debug level: not shown at the default


@pytest.mark.parametrize("mode", MODES)
async def test_execute_in_the_background_then_status_result_cancel(
    js: JupyterProcess, kernels: dict[str, str], mode: str
) -> None:
    """A long cell in a notebook's kernel as a task (nbmcp.tasks): id at once, output so far, result, cancel."""
    gate = js.root / f"gate-{mode}"
    code = (
        f"import os, time\nprint('begun', flush=True)\nwhile not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.02)\n'done'"
    )
    async with connect(js.url + "nbmcp/mcp", js.token, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"task_status", "task_result", "task_cancel"} <= names
        begun = await client.call_tool("execute", {"code": code, "notebook": "report.ipynb", "background": True})
        task_id = begun.structured_content["task_id"]
        with anyio.fail_after(30):
            while (
                "begun" not in (status := await client.call_tool("task_status", {"task_id": task_id})).content[0].text
            ):
                await anyio.sleep(0.05)
        assert status.structured_content["status"] == "working"
        gate.touch()
        result = await client.call_tool("task_result", {"task_id": task_id, "wait": 30})
        assert not result.is_error and "'done'" in text_of(result), text_of(result)

        never = js.root / "never"
        stuck = await client.call_tool(
            "execute", {"code": code.replace(str(gate), str(never)), "notebook": "report.ipynb", "background": True}
        )
        stuck_id = stuck.structured_content["task_id"]
        with anyio.fail_after(30):
            while "begun" not in (await client.call_tool("task_status", {"task_id": stuck_id})).content[0].text:
                await anyio.sleep(0.05)
        cancelled = await client.call_tool("task_cancel", {"task_id": stuck_id})
        assert cancelled.structured_content["status"] == "cancelled"
        after = await client.call_tool("execute", {"code": "1 + 1", "notebook": "report.ipynb"})
        assert text_of(after).startswith("2"), text_of(after)
        unknown = await client.call_tool("task_status", {"task_id": "nope"})
        assert unknown.is_error and "no task 'nope'" in text_of(unknown)
    if mode == "auto":  # the 2026 tasks extension: execute is a task on the wire, resolved by the client's extension
        from nbmcp.tasks import tasks_client_extension

        async with connect(js.url + "nbmcp/mcp", js.token, extensions=[tasks_client_extension()]) as client:
            raw = await client.session.call_tool(
                "execute", {"code": "'as a task'", "notebook": "report.ipynb", "background": True}, allow_claimed=True
            )
            assert raw.result_type == "task"
            resolved = await client.call_tool(
                "execute", {"code": "'resolved'", "notebook": "report.ipynb", "background": True}
            )
            assert text_of(resolved).startswith("'resolved'"), text_of(resolved)
            # without background=true, a call that finishes within the grace (nbmcp.tasks.TASK_GRACE) is inline
            inline = await client.session.call_tool(
                "execute", {"code": "'inline'", "notebook": "report.ipynb"}, allow_claimed=True
            )
            assert inline.result_type in (None, "complete") and inline.content[0].text.startswith("'inline'")
