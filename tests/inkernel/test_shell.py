"""The kernel-side runner of ``main_thread=True`` tools: its calls run on the kernel's loop, between cells.

The loop here is a real tornado ``IOLoop`` over this test's asyncio loop, as in ipykernel; what the runner reads of
the kernel (``io_loop``, the lock held while a cell runs) stands in a namespace, so that the call's own task can be
cancelled the way a stopping kernel loop cancels it (tests/inkernel/test_calls.py runs these tools in a real kernel).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import anyio
import pytest
from tornado.ioloop import IOLoop

from nbmcp.inkernel.shell import main_thread_runner

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


async def _new_task(before: set[asyncio.Task]) -> asyncio.Task:
    """The task the runner's callback started on the loop (tornado starts it at the loop's next turn)."""
    with anyio.fail_after(10):
        while not (started := asyncio.all_tasks() - before):
            await asyncio.sleep(0)
    return started.pop()


async def test_a_call_waiting_between_cells_runs_when_the_cell_ends() -> None:
    cell_running = asyncio.Lock()
    run = main_thread_runner(
        SimpleNamespace(kernel=SimpleNamespace(io_loop=IOLoop.current(), _main_asyncio_lock=cell_running))
    )
    assert run is not None
    await cell_running.acquire()
    future = run(lambda: "ran")
    await asyncio.sleep(0)
    assert not future.done()  # waits for the cell
    cell_running.release()
    assert await asyncio.wrap_future(future) == "ran"


async def test_a_call_cancelled_on_the_kernels_loop_tells_its_caller_and_stays_cancelled() -> None:
    """A stopping kernel loop cancels the call's task: its caller (on the server's thread) must hear of it, and the
    task must end cancelled. Swallowing the cancellation ended the task as if it had finished."""
    cell_running = asyncio.Lock()
    run = main_thread_runner(
        SimpleNamespace(kernel=SimpleNamespace(io_loop=IOLoop.current(), _main_asyncio_lock=cell_running))
    )
    assert run is not None
    await cell_running.acquire()  # the call waits behind a running cell
    before = asyncio.all_tasks()
    future = run(lambda: "ran")
    job = await _new_task(before)
    with anyio.fail_after(10):
        while not future.running():  # the call has begun: it waits for the cell's lock
            await asyncio.sleep(0)
    job.cancel()
    await asyncio.wait([job])
    assert job.cancelled()
    with pytest.raises(RuntimeError, match="stopped before the call finished"):
        future.result(timeout=0)
    cell_running.release()
