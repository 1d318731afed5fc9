"""Faults from outside: a kernel killed mid-cell, ``nbmcp serve`` killed mid-write, signals while busy, a cell
that swallows KeyboardInterrupt. Each leaves a clear message, a working restart, valid files and no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import nbformat
import pytest
from mcp import Client

from tests.mcp_results import text_of
from tests.serve.test_tools import run, serve_params, wait_gone

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def kernel_pid(client: Client) -> int:
    result = await run(client, "import os\nos.getpid()")
    return int(result.structured_content["kernel"]["pid"])


async def test_a_kernel_killed_mid_cell_is_reported_at_once_and_restart_recovers(tmp_path: Path) -> None:
    async with Client(serve_params("--no-record", cwd=tmp_path)) as client:
        pid = await kernel_pid(client)
        async with anyio.create_task_group() as tg:
            outcome: dict[str, object] = {}

            async def long_cell() -> None:
                started = time.monotonic()
                outcome["result"] = await run(client, "import time\nprint('started', flush=True)\ntime.sleep(60)")
                outcome["seconds"] = time.monotonic() - started

            tg.start_soon(long_cell)
            # The cell is running once the kernel reports busy; a short poll on its process state is enough.
            await anyio.sleep(1.0)
            os.kill(pid, signal.SIGKILL)
        result = outcome["result"]
        assert result.is_error and result.structured_content["status"] == "dead", text_of(result)  # type: ignore[union-attr]
        assert "restart" in text_of(result)
        assert float(outcome["seconds"]) < 20  # type: ignore[arg-type]
        restarted = await client.call_tool("restart", {})
        assert not restarted.is_error, text_of(restarted)
        assert (await run(client, "6 * 7")).content[0].text == "42"
        assert await kernel_pid(client) != pid


def test_serve_killed_mid_notebook_write_leaves_a_valid_notebook_or_none(tmp_path: Path) -> None:
    """The session notebook is replaced atomically: whenever serve dies, the file on disk parses and validates."""
    notebook = tmp_path / "session.ipynb"
    cells = "".join(
        f'{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"execute",'
        f'"arguments":{{"code":"print(\'x\' * 200_000)\\n{i}"}}}}}}\n'
        for i in range(2, 40)
    )
    init = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        '"capabilities":{},"clientInfo":{"name":"faults","version":"0"}}}\n'
        '{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
    )
    for delay in (1.5, 2.5, 3.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbmcp.cli", "serve", "--notebook", str(notebook), "--output-budget", "400000"],
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdin is not None
        proc.stdin.write((init + cells).encode())
        proc.stdin.flush()
        time.sleep(delay)  # not synchronisation: the kill is meant to land at an arbitrary moment
        proc.kill()
        proc.wait(10)
        if notebook.exists():
            nbformat.validate(nbformat.read(notebook, as_version=4))
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != notebook.name]
        assert not [name for name in leftovers if name.endswith(".ipynb")], leftovers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
async def test_a_signal_while_a_cell_runs_ends_serve_and_its_kernel(tmp_path: Path, signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbmcp.cli", "serve", "--no-record"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{},"clientInfo":{"name":"faults","version":"0"}}}\n'
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"execute","arguments":'
        b'{"code":"import os\\nos.getpid()"}}}\n'
    )
    proc.stdin.flush()
    kernel = None
    for line in proc.stdout:
        if b'"id":2' in line:
            kernel = int(line.split(b'"pid":', 1)[1].split(b",", 1)[0].split(b"}", 1)[0])
            break
    assert kernel is not None
    proc.stdin.write(
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"execute","arguments":'
        b'{"code":"import time\\ntime.sleep(60)"}}}\n'
    )
    proc.stdin.flush()
    time.sleep(1.0)  # let the cell start; the signal must work whether or not it has
    proc.send_signal(signum)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"nbmcp serve did not exit on {signal.Signals(signum).name} while a cell ran")
    finally:
        proc.stdin.close()
        proc.stdout.close()
    assert wait_gone(kernel), f"kernel {kernel} outlived nbmcp serve after {signal.Signals(signum).name}"


async def test_a_cell_that_swallows_keyboard_interrupt_is_reported_and_restart_recovers(tmp_path: Path) -> None:
    stubborn = (
        "import time\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        "        time.sleep(0.05)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    async with Client(serve_params("--no-record", cwd=tmp_path)) as client:
        started = time.monotonic()
        result = await run(client, stubborn, timeout=2)
        assert time.monotonic() - started < 30
        assert result.is_error, text_of(result)
        message = text_of(result)
        assert "restart" in message, message
        restarted = await client.call_tool("restart", {})
        assert not restarted.is_error, text_of(restarted)
        assert (await run(client, "1 + 1")).content[0].text == "2"
