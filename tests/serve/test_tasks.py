"""Long cells as background tasks in ``nbmcp serve``: a real stdio subprocess, a real kernel, the SDK client in
both protocol eras (``legacy``: the initialize handshake; ``auto``: the stateless 2026-07-28 era).

The cells wait on a file the test creates, so "still running" is a fact when the test looks, not a race.
"""

from __future__ import annotations

import os
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
from mcp.types import TextContent

from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module", params=["legacy", "auto"])
async def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict]:
    workdir = tmp_path_factory.mktemp(f"tasks-{request.param}")
    notebook = workdir / "session.ipynb"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--notebook", str(notebook)],
        cwd=str(workdir),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params, mode=request.param) as client:
        yield {"client": client, "dir": workdir, "notebook": notebook, "mode": request.param}


def gated_cell(gate: Path, marker: str) -> str:
    """A cell that prints ``marker``, then runs until ``gate`` exists, then prints and returns a value."""
    return (
        "import os, time\n"
        f"print({marker!r}, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.02)\n"
        "print('after the gate')\n"
        "6 * 7"
    )


async def poll_status(client: Client, task_id: str, ready: Any, timeout: float = 20) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            status = (await client.call_tool("task_status", {"task_id": task_id})).structured_content
            if ready(status):
                return status
            await anyio.sleep(0.05)


async def test_background_execute_returns_at_once_and_the_result_later(served: dict) -> None:
    client, gate = served["client"], served["dir"] / "gate-result"
    started = time.perf_counter()
    begun = await client.call_tool("execute", {"code": gated_cell(gate, "first line"), "background": True})
    assert time.perf_counter() - started < 5  # answered while the cell waits on the gate
    assert not begun.is_error, text_of(begun)
    task_id = begun.structured_content["task_id"]
    assert "task_status" in text_of(begun) and task_id in text_of(begun)

    status = await poll_status(client, task_id, lambda s: "first line" in s["partial_output"])
    assert status["status"] == "working" and status["output_chunks"] >= 1 and not status["result_ready"]
    early = await client.call_tool("task_result", {"task_id": task_id})
    assert early.is_error and "has not finished" in text_of(early)
    # Other tools answer while the background cell runs.
    assert not (await client.call_tool("task_status", {"task_id": task_id})).is_error

    gate.touch()
    result = await client.call_tool("task_result", {"task_id": task_id, "wait": 30})
    assert not result.is_error, text_of(result)
    assert result.structured_content["status"] == "ok"
    texts = [b.text for b in result.content if isinstance(b, TextContent)]
    assert texts[0] == "first line\nafter the gate\n" and texts[1] == "42"
    # Still readable afterwards, and the session notebook recorded it like any execute.
    again = await client.call_tool("task_result", {"task_id": task_id})
    assert [b.text for b in again.content if isinstance(b, TextContent)][:2] == texts[:2]
    done = (await client.call_tool("task_status", {"task_id": task_id})).structured_content
    assert done["status"] == "completed" and done["result_ready"]
    with anyio.fail_after(15):  # the recorder writes the notebook shortly after a quiet spell
        while not (served["notebook"].exists() and recorded(served["notebook"], "first line")):
            await anyio.sleep(0.1)


def recorded(notebook: Path, marker: str) -> bool:
    try:
        cells = nbformat.read(notebook, as_version=4).cells
    except Exception:  # being written
        return False
    return any(marker in cell.source and cell.outputs for cell in cells)


async def test_task_cancel_interrupts_the_kernel_and_keeps_its_state(served: dict) -> None:
    client, gate = served["client"], served["dir"] / "gate-never"
    await client.call_tool("execute", {"code": "kept = 'still here'"})
    begun = await client.call_tool("execute", {"code": gated_cell(gate, "waiting"), "background": True})
    task_id = begun.structured_content["task_id"]
    await poll_status(client, task_id, lambda s: "waiting" in s["partial_output"])
    cancelled = await client.call_tool("task_cancel", {"task_id": task_id})
    assert cancelled.structured_content["status"] == "cancelled", text_of(cancelled)
    result = await client.call_tool("task_result", {"task_id": task_id})
    assert result.is_error and "cancelled" in text_of(result)
    after = await client.call_tool("execute", {"code": "kept"})  # the kernel was interrupted, not restarted
    assert not after.is_error and after.content[0].text == "'still here'"


async def test_an_unknown_task_id_says_what_to_do(served: dict) -> None:
    client = served["client"]
    for tool in ("task_status", "task_result", "task_cancel"):
        result = await client.call_tool(tool, {"task_id": "nope"})
        assert result.is_error and "no task 'nope'" in text_of(result) and "background=True" in text_of(result)
    bad_wait = await client.call_tool("task_result", {"task_id": "nope", "wait": 500})
    assert bad_wait.is_error and "wait must be between 0 and 60" in text_of(bad_wait)


async def test_a_failing_background_cell_is_a_failed_task(served: dict) -> None:
    client = served["client"]
    begun = await client.call_tool("execute", {"code": "1/0", "background": True})
    result = await client.call_tool("task_result", {"task_id": begun.structured_content["task_id"], "wait": 30})
    assert result.is_error and "ZeroDivisionError" in text_of(result)
    status = await client.call_tool("task_status", {"task_id": begun.structured_content["task_id"]})
    assert status.structured_content["status"] == "failed"


async def test_the_2026_tasks_extension_resolves_execute_through_tasks(tmp_path: Path) -> None:
    """A client advertising the tasks extension gets a call that outlasts the grace (--task-grace) as a task on
    the wire (resultType "task"), which its extension polls with tasks/get and fetches with tasks/result: call_tool
    still returns the cell's result. A call that finishes within the grace answers inline; background=true asked
    by the client is a task at once."""
    from nbmcp.tasks import TASKS_EXTENSION, tasks_client_extension

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--notebook", str(tmp_path / "s.ipynb"), "--task-grace", "3"],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params, mode="auto", extensions=[tasks_client_extension()]) as client:
        result = await client.call_tool("execute", {"code": "import time\nprint('in a task')\ntime.sleep(4)\n6 * 7"})
        assert not result.is_error, text_of(result)
        assert [b.text for b in result.content if isinstance(b, TextContent)][:2] == ["in a task\n", "42"]
        # The same on the wire, without transparent resolution: a slow call is a task, readable with the plain pair.
        raw = await client.session.call_tool("execute", {"code": "time.sleep(4)\n'raw'"}, allow_claimed=True)
        assert raw.result_type == "task" and raw.task["status"] == "working" and raw.task["pollInterval"] > 0
        plain = await client.call_tool("task_result", {"task_id": raw.task["taskId"], "wait": 30})
        assert text_of(plain).startswith("'raw'"), text_of(plain)
        # A fast call answers inline (no task left behind); background=true is a task however fast.
        fast = await client.session.call_tool("execute", {"code": "'fast'"}, allow_claimed=True)
        assert fast.result_type in (None, "complete") and fast.content[0].text == "'fast'", fast
        asked = await client.session.call_tool("execute", {"code": "'asked'", "background": True}, allow_claimed=True)
        assert asked.result_type == "task", asked
        assert client.server_capabilities.extensions[TASKS_EXTENSION] == {"tools": ["execute"]}
    # (A client without the extension gets plain results: the tests above, in the same era.)
