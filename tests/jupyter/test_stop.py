"""Stopping a Jupyter Server as JupyterHub does (SIGINT, no terminal; then SIGTERM) after the assistant wrote a
live cell into a notebook the human still has open: the process must end within seconds, not wait for SIGKILL.

Each case starts its own ``jupyter server`` (with jupyter-collaboration, as on the Hub where this was found) with
stdin not a terminal, as a Hub's spawner runs it; the control case stops a server nobody opened a notebook on.
Before the fix the live cases never ended (the main thread waited in ``threading._shutdown`` on anyio's worker
threads, see ``nbmcp/jupyter/shutdown.py``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import nbformat
import pytest
from mcp.types import TextContent

from nbmcp.client import connect
from nbmcp.jupyter.shutdown import stop_loop_workers
from tests.jupyter_helpers import EXTENSIONS, JupyterProcess, _stop, _wait_until_up, free_port
from tests.ydoc_client import open_notebook

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

#: Seconds a stopped server may take to exit: measured 4-8 s on a loaded 2-core machine, the control as much
#: (kernel shutdown, and CPython's final garbage collection of Jupyter's modules); before the fix: never.
EXIT_WITHIN = 20.0


@contextmanager
def detached_server(root: Path) -> Iterator[JupyterProcess]:
    """``jupyter server`` with nbmcp, its stdin not a terminal (so SIGINT is not Jupyter's ^C prompt), as
    JupyterHub's local spawners run a user's server; killed afterwards if a test left it running."""
    port, token = free_port(), secrets.token_hex(24)
    runtime = root.parent / "runtime"
    runtime.mkdir()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("JUPYTER_TOKEN", None)
    cmd = [
        *(sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1"),
        *(f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"),
        *(f"--IdentityProvider.token={token}", f"--ServerApp.jpserver_extensions={EXTENSIONS}"),
    ]
    log = root.parent / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = JupyterProcess(proc, f"http://127.0.0.1:{port}/", token, root, runtime, log)
    try:
        _wait_until_up(server, 90)
        yield server
    finally:
        _stop(server)


def notebook_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")], metadata={"kernelspec": kernelspec})
    nbformat.write(notebook, root / "open.ipynb")
    return root


def stop_and_time(server: JupyterProcess, signum: int) -> float:
    """Send ``signum`` to the server process; seconds until it exited (fails past ``EXIT_WITHIN``)."""
    started = time.monotonic()
    server.proc.send_signal(signum)
    try:
        server.proc.wait(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXIT_WITHIN} s of signal {signum}:\n{server.log_text()}")
    return time.monotonic() - started


def open_kernel(server: JupyterProcess, path: str) -> None:
    """Start ``path``'s kernel as JupyterLab does and wait until it answers (on a loaded machine a kernel still
    importing ipykernel misses heartbeats and looks dead to a new client)."""
    from jupyter_client import BlockingKernelClient

    kernel_id = server.start_notebook_kernel(path)
    client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        msg_id = client.kernel_info()
        while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
    finally:
        client.stop_channels()


async def write_live_cell(server: JupyterProcess) -> None:
    """What happened on the Hub: the assistant runs code in the notebook the human has open (a live cell)."""
    await anyio.to_thread.run_sync(open_kernel, server, "open.ipynb")
    async with connect(f"{server.url}nbmcp/mcp", server.token) as client:
        result = await client.call_tool("execute", {"code": "print('from the assistant')", "notebook": "open.ipynb"})
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert not result.is_error and "from the assistant" in text, text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_stop_after_a_live_cell_with_the_notebook_still_open(tmp_path: Path, signum: int) -> None:
    with detached_server(notebook_root(tmp_path)) as server:
        async with open_notebook(server.url, server.token, "open.ipynb") as (notebook, _room):
            await write_live_cell(server)
            with anyio.fail_after(30):  # the cell reaches the human's copy of the document
                while len(notebook.get()["cells"]) < 2:
                    await anyio.sleep(0.02)
            assert notebook.get()["cells"][1]["metadata"]["nbmcp"]["author"] == "assistant"
            # stopped while the tab is still connected, as the Hub stops an idle user's server
            seconds = await anyio.to_thread.run_sync(stop_and_time, server, signum)
        log = server.log.read_text(errors="replace")
    print(f"exit after signal {signum} with a live cell and the notebook open: {seconds:.2f} s")
    # a graceful stop: extensions stopped, kernels shut down (not a KeyboardInterrupt that skips them)
    assert f"received signal {int(signum)}, stopping" in log, log[-3000:]
    assert "Kernel shutdown:" in log, log[-3000:]


async def test_stop_control_without_a_live_cell(tmp_path: Path) -> None:
    """The control: SIGINT to a server with a kernel but no notebook open in collaboration."""
    with detached_server(notebook_root(tmp_path)) as server:
        open_kernel(server, "open.ipynb")
        seconds = await anyio.to_thread.run_sync(stop_and_time, server, signal.SIGINT)
    print(f"exit after SIGINT, no notebook open: {seconds:.2f} s")


def test_stop_loop_workers_ends_the_anyio_workers_of_a_stopped_loop() -> None:
    """The mechanism alone: a worker whose root task never finishes (a connected WebSocket's request task)
    outlives its stopped loop, a non-daemon thread the interpreter would wait for; told, it ends."""
    loop = asyncio.new_event_loop()

    async def connection() -> None:  # a tornado request task: no anyio task group, so anyio's root is this task
        await anyio.to_thread.run_sync(lambda: None)
        loop.stop()  # the server stops while the connection is still open
        await asyncio.Event().wait()

    task = loop.create_task(connection())
    try:
        loop.run_forever()
        workers = [t for t in threading.enumerate() if getattr(t, "loop", None) is loop]
        assert len(workers) == 1 and workers[0].is_alive() and not workers[0].daemon
        assert stop_loop_workers(loop) == 1
        workers[0].join(timeout=5)
        assert not workers[0].is_alive()
        assert stop_loop_workers(loop) == 0
    finally:
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()
