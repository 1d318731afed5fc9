"""``nbmcp.tasks.TaskRegistry``: bounded by count and age, a cap on running work, cancel, failures as results; each
client sees only its own tasks."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest
from mcp.types import CallToolResult, TextContent

from nbmcp.tasks import TaskRegistry, owner_middleware, shown_id, status_result

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


async def as_client(owner: object, call: Any) -> Any:
    """``call()`` in a request of client ``owner``, the way nbmcp's servers name it (owner_middleware)."""

    async def handler(ctx: object) -> Any:
        value = call()
        return await value if inspect.isawaitable(value) else value

    return await owner_middleware(lambda ctx: owner)(object(), handler)


async def test_a_task_is_its_clients_only_and_the_cap_is_per_client() -> None:
    registry = TaskRegistry(keep=2, max_running=1)
    release = asyncio.Event()

    async def blocked(task: object) -> CallToolResult:
        await release.wait()
        return done("released")

    alices = await as_client("alice", lambda: registry.start("execute", "a", blocked))
    assert alices.owner == "alice"
    with pytest.raises(LookupError, match="no task"):
        await as_client("bob", lambda: registry.get(alices.id))
    assert await as_client("bob", registry.tasks) == []
    with pytest.raises(RuntimeError, match="at most 1 per client"):
        await as_client("alice", lambda: registry.start("execute", "again", blocked))
    bobs = await as_client("bob", lambda: registry.start("execute", "b", blocked))  # alice's cap is not bob's
    release.set()
    assert (await as_client("alice", lambda: registry.wait(alices.id, 5))).status == "completed"
    await asyncio.wait([t.runner for t in (alices, bobs) if t.runner is not None])

    async def quick(task: object) -> CallToolResult:
        return done("ok")

    # keep is per client: bob's finished tasks do not push out alice's
    for _ in range(5):
        finished = await as_client("bob", lambda: registry.start("execute", "q", quick))
        await asyncio.wait([finished.runner])
    assert [t.id for t in await as_client("alice", registry.tasks)] == [alices.id]
    assert len(await as_client("bob", registry.tasks)) == 2


def test_an_echoed_task_id_is_cut() -> None:
    assert shown_id("abc") == "'abc'"
    long = shown_id("y" * 100_000)
    assert long == repr("y" * 64) + "…"
    with pytest.raises(LookupError) as caught:
        TaskRegistry().get("z" * 100_000)
    assert len(str(caught.value)) < 300


async def test_a_call_within_the_grace_answers_inline_and_a_cancelled_request_cancels_its_work() -> None:
    from nbmcp.tasks import _within_grace

    registry = TaskRegistry()
    release = asyncio.Event()

    async def blocked(task: object) -> CallToolResult:
        await release.wait()
        return done("released")

    quick = registry.start("execute", "quick", lambda task: asyncio.sleep(0, done("quick")))
    assert (await _within_grace(quick, 5)).content[0].text == "quick"
    slow = registry.start("execute", "slow", blocked)
    assert await _within_grace(slow, 0.05) is None and not slow.done  # still running: the client gets a task
    waiting = asyncio.ensure_future(_within_grace(slow, 30))
    await asyncio.sleep(0)
    waiting.cancel()  # the client cancelled its plain call: nobody will poll the task, so its work stops
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait([slow.runner], timeout=5)
    assert slow.status == "cancelled"


def test_the_grace_is_configured_like_everything_else() -> None:
    """``c.NbMCP.task_grace``, ``c.NbMCPServerExtension.task_grace`` and ``nbmcp serve --task-grace``: one default
    (written out where importing nbmcp.tasks would make the CLI heavy), and a negative grace refused."""
    from traitlets import TraitError

    from nbmcp.cli import build_parser
    from nbmcp.inkernel.config import InKernelSettings, NbMCP
    from nbmcp.jupyter.app import NbMCPServerExtension
    from nbmcp.serve import ServeOptions
    from nbmcp.tasks import TASK_GRACE

    serve = build_parser().parse_args(["serve"])
    assert serve.task_grace == NbMCP().task_grace == NbMCPServerExtension().task_grace == TASK_GRACE
    assert ServeOptions().task_grace == TASK_GRACE
    assert build_parser().parse_args(["serve", "--task-grace", "0"]).task_grace == 0
    assert InKernelSettings.from_config(NbMCP(task_grace=2.5)).task_grace == 2.5
    with pytest.raises(TraitError):
        NbMCP(task_grace=-1)
    with pytest.raises(ValueError, match="task-grace"):
        ServeOptions(task_grace=-1)
