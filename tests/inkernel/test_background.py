"""The in-kernel ``execute(..., background=True)``: approved in the request, run between cells as a task.

A real kernel with ``%load_ext nbmcp`` in execute mode; the SDK client in both protocol eras. Cells wait on a file
the test creates, so "running" and "queued" are facts when the test looks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    return start_server(kernel, "%mcp approve all\n%mcp mode execute")


def gated(gate: Path, marker: str, value: str = "6 * 7") -> str:
    return (
        f"import os, time\nprint({marker!r}, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\n{value}"
    )


async def poll(client: Any, task_id: str, ready: Any, timeout: float = 20) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            status = (await client.call_tool("task_status", {"task_id": task_id})).structured_content
            if ready(status):
                return status
            await anyio.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
async def test_background_execute_then_status_and_result(
    server: dict, kernel: KernelHandle, tmp_path: Path, mode: str
) -> None:
    gate = tmp_path / "gate"
    async with connect(server["url"], server["token"], mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"execute", "task_status", "task_result", "task_cancel"} <= names
        started = time.perf_counter()
        begun = await client.call_tool("execute", {"code": gated(gate, "begun"), "background": True})
        assert time.perf_counter() - started < 5 and not begun.is_error, text_of(begun)
        task_id = begun.structured_content["task_id"]
        status = await poll(client, task_id, lambda s: "begun" in s["partial_output"])
        assert status["status"] == "working"
        early = await client.call_tool("task_result", {"task_id": task_id})
        assert early.is_error and "has not finished" in text_of(early)
        gate.touch()
        result = await client.call_tool("task_result", {"task_id": task_id, "wait": 30})
    assert not result.is_error, text_of(result)
    assert text_of(result) == "begun\n42"  # what the foreground execute returns: printed text, then the value
    assert kernel.run("1 + 1").raise_for_error()  # the kernel is free again


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_interrupts_only_the_tasks_own_code(
    server: dict, kernel: KernelHandle, tmp_path: Path, mode: str
) -> None:
    kernel.run("kept = 'still here'").raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        begun = await client.call_tool("execute", {"code": gated(tmp_path / "never", "looping"), "background": True})
        task_id = begun.structured_content["task_id"]
        await poll(client, task_id, lambda s: "looping" in s["partial_output"])
        cancelled = await client.call_tool("task_cancel", {"task_id": task_id})
        assert cancelled.structured_content["status"] == "cancelled", text_of(cancelled)
        # The interrupt hit the task's code, not the kernel: state kept, the next cell runs normally.
        after = await client.call_tool("execute", {"code": "kept"})
    assert text_of(after) == "'still here'"
    assert kernel.value("kept") == "still here"


async def test_a_queued_task_cancelled_never_runs(server: dict, kernel: KernelHandle, tmp_path: Path) -> None:
    gate = tmp_path / "human"
    kernel.run("ran = []").raise_for_error()
    human = kernel.start_cell(gated(gate, "human cell", "'human done'"))  # the owner's long cell holds the kernel
    try:
        async with connect(server["url"], server["token"]) as client:
            begun = await client.call_tool("execute", {"code": "ran.append(1)", "background": True})
            task_id = begun.structured_content["task_id"]
            status = (await client.call_tool("task_status", {"task_id": task_id})).structured_content
            assert status["status"] == "working"  # queued behind the owner's cell
            cancelled = await client.call_tool("task_cancel", {"task_id": task_id})
            assert cancelled.structured_content["status"] == "cancelled"
    finally:
        gate.touch()
        assert "human cell" in await anyio.to_thread.run_sync(kernel.wait_idle, human)  # not interrupted
    assert kernel.value("ran") == []


async def test_background_still_needs_approval(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp approve none").raise_for_error()
    try:
        async with connect(server["url"], server["token"]) as client:
            refused = await client.call_tool("execute", {"code": "1", "background": True})
            unknown = await client.call_tool("task_status", {"task_id": "nope"})
    finally:
        kernel.run("%mcp approve all").raise_for_error()
    assert refused.is_error and "approval policy: none" in text_of(refused)
    assert refused.structured_content is None  # no task was started
    assert unknown.is_error and "no task 'nope'" in text_of(unknown)


async def test_the_2026_tasks_extension_runs_execute_as_a_task(server: dict, kernel: KernelHandle) -> None:
    """A 2026 client with nbmcp's tasks client extension: a fast execute answers inline (within the grace), one
    that asked for background=true is a task on the wire, resolved for it."""
    from nbmcp.tasks import TASKS_EXTENSION, tasks_client_extension

    async with connect(server["url"], server["token"], extensions=[tasks_client_extension()]) as client:
        assert TASKS_EXTENSION in (client.server_capabilities.extensions or {})
        result = await client.call_tool("execute", {"code": "print('via a task')\n40 + 2", "background": True})
        raw = await client.session.call_tool("execute", {"code": "'raw'", "background": True}, allow_claimed=True)
        fast = await client.session.call_tool("execute", {"code": "'fast'"}, allow_claimed=True)
    assert text_of(result) == "via a task\n42", text_of(result)
    assert raw.result_type == "task" and raw.task["status"] == "working"
    assert fast.result_type in (None, "complete") and fast.content[0].text == "'fast'", fast
