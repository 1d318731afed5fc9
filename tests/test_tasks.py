"""``nbmcp.tasks.TaskRegistry``: bounded by count and age, a cap on running work, cancel, failures as results."""

from __future__ import annotations

import asyncio
import time

import pytest
from mcp.types import CallToolResult, TextContent

from nbmcp.tasks import TaskRegistry, status_result

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def done(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


async def test_finished_tasks_are_kept_up_to_keep_and_ttl() -> None:
    registry = TaskRegistry(keep=3, ttl=3600)

    async def quick(task: object) -> CallToolResult:
        return done("ok")

    started = [registry.start("execute", f"cell {i}", quick) for i in range(5)]
    await asyncio.wait([t.runner for t in started if t.runner is not None])
    assert all(t.status == "completed" for t in started)
    ids = [t.id for t in started]
    assert [t.id for t in registry.tasks()] == ids[-3:]  # the oldest finished ones went first
    with pytest.raises(LookupError, match="task_id: no task"):
        registry.get(ids[0])
    # Age: a finished task older than the ttl is dropped.
    registry.get(ids[-1]).finished = time.time() - 7200
    assert ids[-1] not in [t.id for t in registry.tasks()]


async def test_running_tasks_are_capped_and_never_dropped() -> None:
    registry = TaskRegistry(keep=0, ttl=0, max_running=2)
    release = asyncio.Event()

    async def blocked(task: object) -> CallToolResult:
        await release.wait()
        return done("released")

    first, second = registry.start("execute", "a", blocked), registry.start("execute", "b", blocked)
    with pytest.raises(RuntimeError, match="at most 2"):
        registry.start("execute", "c", blocked)
    registry.prune()
    assert {t.id for t in registry.tasks()} == {first.id, second.id}  # keep=0, ttl=0: still there
    release.set()
    assert (await registry.wait(first.id, 5)).result.content[0].text == "released"


async def test_cancel_and_failure_become_results() -> None:
    registry = TaskRegistry()
    started = asyncio.Event()

    async def forever(task: object) -> CallToolResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def broken(task: object) -> CallToolResult:
        raise ValueError("bad cell")

    running = registry.start("execute", "forever", forever)
    await started.wait()
    running.on_output("stdout", "x" * 10_000)
    assert len(running.as_dict()["partial_output"]) == 4_000  # the tail only
    cancelled = await registry.cancel(running.id)
    assert cancelled.status == "cancelled" and cancelled.result.is_error
    failed = await registry.wait(registry.start("execute", "broken", broken).id, 5)
    assert failed.status == "failed" and "ValueError: bad cell" in failed.result.content[0].text
    not_done = status_result(registry.start("execute", "forever", forever), not_finished_error=True)
    assert not_done.is_error and "has not finished yet" in not_done.content[0].text
    await registry.close()
