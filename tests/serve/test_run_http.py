"""`nbmcp serve --transport http`: token, Host/Origin, a kernel per client session, none leaked."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import connect
from tests.serve.test_tools import pid_alive, wait_gone

pytestmark = pytest.mark.anyio

TOKEN = "test-token-" + "x" * 20


class ServeProcess:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "NBMCP_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.connection_file: Path | None = None
        self.printed_url = ""
        cmd = [sys.executable, "-m", "nbmcp.cli", "serve", "--transport", "http", "--no-record", *args]
        self.proc = subprocess.Popen(cmd, cwd=tmp, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.url = self._wait_url()

    def _wait_url(self, timeout: float = 30) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("nbmcp serve: http"):
                # the URL printed first: per client, one that names a kernel of its own (.../k/NAME/mcp)
                self.printed_url = line.split(": ", 1)[1].strip()
                token_line = self.proc.stderr.readline()  # "  bearer token: abcd… (full token in PATH)"
                if "full token in " in token_line:
                    self.connection_file = Path(token_line.split("full token in ", 1)[1].rstrip().rstrip(")"))
                named = re.fullmatch(r"(http://[^/]+)/k/[^/]+/mcp", self.printed_url)
                return f"{named[1]}/mcp" if named else self.printed_url  # the bare endpoint
        self.proc.kill()
        raise AssertionError(f"server did not start: {''.join(seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("http"))
    try:
        yield proc
    finally:
        proc.stop()


async def kernel_pid(client: Any) -> int:
    result = await client.call_tool("execute", {"code": "import os\nos.getpid()"})
    return int(result.content[0].text)


def test_token_host_and_origin_are_checked(server: ServeProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(server.url, json=body, headers=headers).status_code == 401
    wrong = {**headers, "Authorization": "Bearer wrong"}
    assert httpx.post(server.url, json=body, headers=wrong).status_code == 401
    good = {**headers, "Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(server.url, json=body, headers={**good, "Host": "evil.example:80"}).status_code == 403
    assert httpx.post(server.url, json=body, headers={**good, "Origin": "http://evil.example"}).status_code == 403
    assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.timeout(90)
async def test_each_session_gets_its_own_kernel_and_disconnect_kills_it(server: ServeProcess) -> None:
    async with connect(server.url, TOKEN, mode="legacy") as a, connect(server.url, TOKEN, mode="legacy") as b:
        pid_a, pid_b = await kernel_pid(a), await kernel_pid(b)
        assert pid_a != pid_b
        await a.call_tool("execute", {"code": "mine = 'a'"})
        assert (await b.call_tool("execute", {"code": "'mine' in globals()"})).content[0].text == "False"

        # client b disconnects in the middle of a long execution
        with anyio.move_on_after(1.0):
            await b.call_tool("execute", {"code": "import time\ntime.sleep(60)"})
    # both sessions ended (client exit sends DELETE): both kernels are gone, checked by pid
    assert wait_gone(pid_b), "kernel of the disconnected client leaked"
    assert wait_gone(pid_a)
    assert server.proc.poll() is None


@pytest.mark.timeout(60)
async def test_other_session_keeps_its_kernel(server: ServeProcess) -> None:
    async with connect(server.url, TOKEN, mode="legacy") as keeper:
        keep_pid = await kernel_pid(keeper)
        async with connect(server.url, TOKEN, mode="legacy") as leaver:
            leave_pid = await kernel_pid(leaver)
        assert wait_gone(leave_pid)
        assert pid_alive(keep_pid)
        assert (await keeper.call_tool("execute", {"code": "40 + 2"})).content[0].text == "42"


@pytest.mark.timeout(60)
async def test_stateless_era_clients_work_and_stream_progress(server: ServeProcess) -> None:
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    url = f"{server.url}/k/progress"  # sessionless clients name their kernel in the URL
    async with connect(url, TOKEN) as client:  # mode="auto": the 2026 era, no session
        code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
        result = await client.call_tool("execute", {"code": code}, progress_callback=on_progress)
        assert result.content[0].text == "0\n1\n2\n"
        assert messages and messages[0] == "0"
        named_pid = await kernel_pid(client)
    async with connect(url, TOKEN) as again:
        assert await kernel_pid(again) == named_pid  # the same name reaches the same kernel


@pytest.mark.timeout(90)
async def test_sigterm_shuts_down_every_kernel(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path)
    try:
        async with connect(proc.url, TOKEN, mode="legacy") as a:
            pid_a = await kernel_pid(a)
            async with connect(f"{proc.url}/k/b", TOKEN) as b:
                pid_b = await kernel_pid(b)
                proc.proc.send_signal(signal.SIGTERM)
                assert wait_gone(pid_a) and wait_gone(pid_b), "kernels leaked after SIGTERM"
        proc.proc.wait(15)
    finally:
        proc.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_removes_the_connection_file_and_the_kernel(tmp_path: Path, signum: int) -> None:
    runtime = tmp_path / "runtime"
    proc = ServeProcess(tmp_path, "--shared", env={"JUPYTER_RUNTIME_DIR": str(runtime)})
    try:
        assert proc.connection_file is not None and proc.connection_file.parent == runtime
        assert TOKEN in proc.connection_file.read_text()
        async with connect(proc.url, TOKEN, mode="legacy") as client:
            pid = await kernel_pid(client)
        proc.proc.send_signal(signum)
        assert proc.proc.wait(10) == -signum  # it dies of the signal, as a well-behaved server does
        assert not proc.connection_file.exists(), "the connection file (with the token) outlived the server"
        assert not list(runtime.glob("nbmcp-*.json"))
        assert wait_gone(pid), "the kernel outlived the server"
    finally:
        proc.stop()


@pytest.mark.timeout(60)
async def test_shared_flag_gives_one_kernel(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path, "--shared")
    try:
        async with connect(proc.url, TOKEN, mode="legacy") as a, connect(proc.url, TOKEN, mode="legacy") as b:
            assert await kernel_pid(a) == await kernel_pid(b)
            pid = await kernel_pid(a)
            await a.call_tool("execute", {"code": "shared_value = 1"})
        async with connect(proc.url, TOKEN) as c, connect(f"{proc.url}/k/other", TOKEN) as d:  # sessionless too
            assert await kernel_pid(c) == await kernel_pid(d) == pid
            assert (await d.call_tool("execute", {"code": "shared_value"})).content[0].text == "1"
        assert pid_alive(pid)  # shared: lives until the server exits
    finally:
        proc.stop()
    assert wait_gone(pid)


@pytest.mark.timeout(60)
async def test_list_hides_the_token_and_bridge_forwards(server: ServeProcess, tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "nbmcp.cli", "list", "--json"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0
    assert server.url in listed.stdout and TOKEN not in listed.stdout

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "bridge", "--url", server.url],
        env={**os.environ, "NBMCP_TOKEN": TOKEN},
        cwd=str(tmp_path),
    )
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    async with Client(params, mode="legacy") as bridged:
        names = {t.name for t in (await bridged.list_tools()).tools}
        assert {"execute", "list_variables"} <= names
        code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
        result = await bridged.call_tool("execute", {"code": code}, progress_callback=on_progress)
        assert result.content[0].text == "0\n1\n2\n"
        assert result.structured_content["status"] == "ok"
        assert messages  # progress relayed through the bridge
        templates = await bridged.list_resource_templates()
        assert any("nbmcp://outputs/" in t.uri_template for t in templates.resource_templates)


def pid_of(client: Any) -> int:
    return int(client.call_tool("execute", {"code": "import os\nos.getpid()"}).content[0].text)


@pytest.mark.timeout(120)
def test_the_printed_url_works_with_every_clients_defaults(server: ServeProcess) -> None:
    import nbmcp  # the README's form: `import nbmcp`, then nbmcp.client.session

    printed = server.printed_url
    base = server.url.removesuffix("/mcp")
    assert re.fullmatch(rf"{re.escape(base)}/k/[0-9a-f]{{8}}/mcp", printed), printed
    assert server.connection_file is not None  # it names both: the bare endpoint and the URL printed first
    saved = json.loads(server.connection_file.read_text())
    assert (saved["url"], saved["client_url"]) == (server.url, printed)
    with nbmcp.client.session(printed, TOKEN) as own:  # nbmcp's own client: the sessionless 2026 era
        assert not own.call_tool("execute", {"code": "marker = 'printed'"}).is_error
        pid = pid_of(own)
    with nbmcp.client.session(printed, TOKEN, mode="legacy") as handshake:  # the SDK's handshake era
        assert handshake.call_tool("execute", {"code": "marker"}).content[0].text == "'printed'"
        assert pid_of(handshake) == pid
    # what fast-agent makes of a URL that does not end in /mcp: the same kernel as the URL it came from
    name = printed.split("/k/", 1)[1].removesuffix("/mcp")
    for alias in (f"{server.url}/k/{name}", f"{server.url}/k/{name}/mcp", f"{printed}/"):
        with nbmcp.client.session(alias, TOKEN) as client:
            assert pid_of(client) == pid, alias
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    missing = httpx.post(f"{base}/k/{name}/mcp/mcp", json=ping, headers=headers)
    assert missing.status_code == 404 and "/k/NAME/mcp" in missing.text


@pytest.mark.timeout(120)
def test_sessionless_clients_given_different_names_do_not_share_a_kernel(server: ServeProcess) -> None:
    import nbmcp.client

    base = server.url.removesuffix("/mcp")
    with (
        nbmcp.client.session(f"{base}/k/one/mcp", TOKEN) as one,
        nbmcp.client.session(f"{base}/k/two/mcp", TOKEN) as two,
    ):
        one.call_tool("execute", {"code": "mine = 1"})
        assert two.call_tool("execute", {"code": "'mine' in globals()"}).content[0].text == "False"
        assert pid_of(one) != pid_of(two)
    with nbmcp.client.session(server.url, TOKEN) as bare:  # the bare endpoint tells no sessionless client apart
        refused = bare.call_tool("execute", {"code": "1"})
    assert refused.is_error and f"{base}/k/NAME/mcp" in refused.content[0].text
