"""nbmcp.client.session: the blocking client the example notebooks use, against a real in-kernel server over HTTP
and a real ``nbmcp serve`` launched over stdio with the command ``nbmcp config generic`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from nbmcp.cli import client_config
from nbmcp.client import ClientConnectError, SyncClient, session
from tests.conftest import KernelHandle, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    kernel.run(
        """
%load_ext nbmcp
import nbmcp, pandas as pd
sales = pd.DataFrame({"region": ["north", "south"] * 50, "amount": [float(i) for i in range(100)]})
nbmcp.expose(sales, "sales", description="orders")

@nbmcp.tool
def double(x: int) -> int:
    return 2 * x

@nbmcp.prompt
def explain(column: str) -> str:
    return f"Explain {column}."
"""
    ).raise_for_error()
    return kernel.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbmcp-client"]


def text(result) -> str:
    return "\n".join(c.text for c in result.content if hasattr(c, "text"))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_blocking_calls_to_an_in_kernel_server(server: dict, mode: str) -> None:
    with session(server["url"], server["token"], mode=mode) as mcp:
        assert client_threads(), "the SDK client runs on its own named thread"
        assert "double" in {tool.name for tool in mcp.list_tools().tools}
        assert text(mcp.call_tool("double", {"x": 21})) == "42"
        rows = json.loads(mcp.read_resource("nbmcp://objects/sales/rows/10/2").contents[0].text)["rows"]
        assert [row["amount"] for row in rows] == [10.0, 11.0]
        assert "nbmcp://objects" in {str(r.uri) for r in mcp.list_resources().resources}
        assert mcp.get_prompt("explain", {"column": "amount"}).messages[0].content.text == "Explain amount."
        bad = mcp.call_tool("double", {"x": "many"})
        assert bad.is_error  # a tool's failure is a result, as an assistant sees it, not an exception
        templates = mcp.run(mcp.client.list_resource_templates)  # any async method of the SDK client
        assert "nbmcp://objects/{name}/rows/{offset}/{limit}" in {t.uri_template for t in templates.resource_templates}
    assert not client_threads(), "closing stops the client's thread"


def test_found_through_the_connection_file(server: dict, kernel: KernelHandle) -> None:
    with session(kernel_id=kernel.kernel_id) as mcp:
        assert mcp.target == server["url"]
        assert text(mcp.call_tool("double", {"x": 2})) == "4"


def test_a_subscriber_hears_about_a_change_made_by_a_cell(server: dict, kernel: KernelHandle) -> None:
    mcp = session(server["url"], server["token"])  # no `with`: stays connected across cells, closed explicitly
    try:
        with mcp.listen(resource_subscriptions=["nbmcp://objects/sales"]) as changes:
            kernel.run("sales.loc[0, 'amount'] = -1.0").raise_for_error()
            assert str(changes.next_event(timeout=10).uri) == "nbmcp://objects/sales"
            with pytest.raises(TimeoutError, match=r"no change event within 0\.2 s"):
                changes.next_event(timeout=0.2)  # nothing else changed
        rows = json.loads(mcp.read_resource("nbmcp://objects/sales/rows/0/1").contents[0].text)["rows"]
        assert rows[0]["amount"] == -1.0
        mcp.listen(resource_subscriptions=["nbmcp://objects/sales"])  # left open: closed with the client
    finally:
        mcp.close()
    assert not client_threads()


def test_connection_failures_say_what_to_do_in_one_line(server: dict, tmp_path) -> None:
    with pytest.raises(ClientConnectError) as refused:
        session(server["url"], "not-the-token")
    assert str(refused.value).startswith(f"{server['url']} refused the token (401): pass the server's token")
    nobody = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(ClientConnectError) as nothing:
        session(nobody, "x")
    assert (
        str(nothing.value)
        == f"nothing answers at {nobody}: is the server running? (`nbmcp list` shows in-kernel servers)"
    )
    with pytest.raises(ClientConnectError, match="no nbmcp server for kernel 'zzz'"):
        session(kernel_id="zzz")
    with pytest.raises(ClientConnectError, match="no such program; use the absolute path `nbmcp config generic`"):
        session(command=[str(tmp_path / "nbmcp"), "serve"])
    crash = "import sys; print('serve: error: unrecognized arguments: --bogus', file=sys.stderr); sys.exit(2)"
    with pytest.raises(ClientConnectError, match="its last words: serve: error: unrecognized arguments: --bogus"):
        session(command=[sys.executable, "-c", crash])
    for failure in (refused, nothing):
        assert "\n" not in str(failure.value) and failure.value.__suppress_context__  # no chained traceback
    assert not client_threads(), "a failed connection leaves no thread behind"
    with pytest.raises(TypeError, match=r"a url \(HTTP\) or a command \(stdio\)"):
        session(server["url"], command=["nbmcp", "serve"])


def pid_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)  # polling another process's exit: there is nothing to wait on
    return False


def test_nbmcp_serve_over_stdio_launched_as_a_client_would(tmp_path) -> None:
    entry = client_config("generic", extra=["--root", str(tmp_path), "--notebook", str(tmp_path / "s.ipynb")])
    entry = entry["mcpServers"]["jupyter"]
    assert os.path.isabs(entry["command"])
    # A client passes a small environment, not the user's shell: the configured command works without PATH help.
    with session(command=[entry["command"], *entry["args"]], env={"PATH": "/usr/bin:/bin"}) as mcp:
        assert isinstance(mcp, SyncClient)
        assert mcp.call_tool("execute", {"code": "x = 6 * 7\nx"}).content[0].text == "42"
        kernel_pid = int(mcp.call_tool("execute", {"code": "import os; os.getpid()"}).content[0].text)
        assert "x: int" in text(mcp.call_tool("list_variables", {}))
    assert pid_gone(kernel_pid, within=30), "closing the session stops nbmcp serve, which shuts its kernel down"
    assert not client_threads()


def test_a_client_left_open_does_not_hang_the_interpreter_at_exit(tmp_path) -> None:
    # A notebook or script that never calls close(): the process still exits, and the server and its kernel go.
    script = tmp_path / "forgetful.py"
    script.write_text(
        "from nbmcp.cli import client_config\n"
        "from nbmcp.client import session\n"
        f"entry = client_config('generic', extra=['--root', {str(tmp_path)!r}])['mcpServers']['jupyter']\n"
        "mcp = session(command=[entry['command'], *entry['args']])\n"
        "print(mcp.call_tool('execute', {'code': 'import os; os.getpid()'}).content[0].text, flush=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert pid_gone(int(done.stdout.split()[0]), within=30)
