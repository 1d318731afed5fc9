"""`nbmcp serve --transport http`: a kernel per client in both protocol eras (issue 10 item 7), a cap on
kernels, idle reaping and a disconnect mid-execute (item 8)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from nbmcp.discovery import pid_alive
from tests.conftest import connect
from tests.serve.test_run_http import TOKEN, ServeProcess, kernel_pid
from tests.serve.test_tools import wait_gone

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("isolation"))
    try:
        yield proc
    finally:
        proc.stop()


async def run(client: Any, code: str) -> str:
    result = await client.call_tool("execute", {"code": code})
    return str(result.content[0].text)


@pytest.mark.timeout(120)
async def test_each_url_name_is_its_own_kernel_in_both_eras(server: ServeProcess) -> None:
    a_url, b_url = f"{server.url}/k/alice", f"{server.url}/k/bob"
    async with connect(a_url, TOKEN) as a, connect(b_url, TOKEN) as b:  # the stateless 2026 era
        await run(a, "secret = 'alice'")
        assert await run(b, "'secret' in globals()") == "False"
        pid_a, pid_b = await kernel_pid(a), await kernel_pid(b)
        assert pid_a != pid_b
    async with connect(a_url, TOKEN) as again, connect(a_url, TOKEN, mode="legacy") as handshake:
        # the same name is the same kernel: a stateless client that comes back, or one in the handshake era
        assert await run(again, "secret") == "'alice'"
        assert await run(handshake, "secret") == "'alice'"
    async with connect(f"{server.url}/k/carol", TOKEN, mode="legacy") as c:
        assert await run(c, "'secret' in globals()") == "False"
    assert pid_alive(pid_a)  # a named kernel outlives its clients (until --idle-timeout)


@pytest.mark.timeout(60)
async def test_a_sessionless_request_on_the_bare_url_is_refused_with_the_way_out(server: ServeProcess) -> None:
    async with connect(server.url, TOKEN) as client:
        result = await client.call_tool("execute", {"code": "1 + 1"})
    assert result.is_error
    text = result.content[0].text
    assert f"{server.url.removesuffix('/mcp')}/k/NAME/mcp" in text and "--shared" in text
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
    bad = httpx.post(f"{server.url}/k/no%20spaces", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
    assert bad.status_code == 404 and "kernel name" in bad.text


@pytest.mark.timeout(90)
async def test_a_sessionless_client_that_disconnects_mid_execute_interrupts_its_cell(server: ServeProcess) -> None:
    url = f"{server.url}/k/dropper"
    async with connect(url, TOKEN) as client:
        await run(client, "import time")
        with anyio.move_on_after(2.0):  # the 2026 era: leaving closes the request's stream, nothing else
            await run(client, "time.sleep(60)\nfinished = True")
    async with connect(url, TOKEN) as client:
        started = time.monotonic()
        assert await run(client, "'finished' in globals()") == "False"
        assert time.monotonic() - started < 10, "the next call waited for the abandoned cell"


def _post(url: str, message: dict[str, Any], session: str | None = None) -> tuple[httpx.Response, list[Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
    if session:
        headers |= {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
    response = httpx.post(url, json=message, headers=headers, timeout=60)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    else:
        events = [response.json()] if response.content else []
    return response, events


@pytest.mark.timeout(120)
async def test_kernels_are_capped_and_abandoned_ones_reaped(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path, "--max-kernels", "2", "--idle-timeout", "10")
    try:
        async with connect(f"{proc.url}/k/one", TOKEN) as one:
            named = await kernel_pid(one)
        # a handshake-era client that goes away without DELETE (no session end is ever sent)
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        response, _ = _post(proc.url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        session = response.headers["mcp-session-id"]
        _post(proc.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        call = {"name": "execute", "arguments": {"code": "import os\nos.getpid()"}}
        _, events = _post(proc.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}, session)
        abandoned = int(events[-1]["result"]["content"][0]["text"])
        async with connect(f"{proc.url}/k/one", TOKEN) as one:
            assert await kernel_pid(one) == named  # used again: not idle, whatever the session start took
        async with connect(f"{proc.url}/k/two", TOKEN) as two:
            refused = await two.call_tool("execute", {"code": "1"})  # a third kernel: over the cap
            assert refused.is_error and "--max-kernels 2" in refused.content[0].text
        # unused for --idle-timeout: both shut down, the named one and the abandoned session's
        assert wait_gone(abandoned, 30) and wait_gone(named, 30)
        async with connect(f"{proc.url}/k/two", TOKEN) as two:
            assert await run(two, "40 + 2") == "42"  # room again
    finally:
        proc.stop()


@pytest.mark.timeout(90)
async def test_a_handshake_client_that_disconnects_mid_execute_interrupts_its_cell(server: ServeProcess) -> None:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    response, _ = _post(server.url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    session = response.headers["mcp-session-id"]
    _post(server.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": session,
        "Mcp-Protocol-Version": "2025-11-25",
    }
    code = "import time\nprint('running', flush=True)\ntime.sleep(60)\nfinished = True"
    params = {"name": "execute", "arguments": {"code": code}, "_meta": {"progressToken": "p"}}
    with httpx.Client(timeout=60) as http:
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        with http.stream("POST", server.url, json=message, headers=headers) as stream:
            for line in stream.iter_lines():
                if "notifications/progress" in line:  # the cell runs: now the client vanishes (no DELETE)
                    break
    started = time.monotonic()
    call = {"name": "execute", "arguments": {"code": "'finished' in globals()"}}
    _, events = _post(server.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, session)
    assert events[-1]["result"]["content"][0]["text"] == "False"
    assert time.monotonic() - started < 10, "the next call waited for the abandoned cell"


@pytest.mark.timeout(60)
def test_a_bad_cap_is_refused_naming_the_flag(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "nbmcp.cli", "serve", "--transport", "http", "--max-kernels", "0"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=50)
    assert done.returncode == 1
    assert "--max-kernels must be at least 1" in done.stderr
