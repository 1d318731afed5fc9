"""Background tasks belong to the client that started them: `nbmcp serve --transport http`, two real clients (their
own kernels at /k/alice/mcp and /k/bob/mcp in the 2026 era, or their own sessions on /mcp in the handshake era).

Another client's task id is "no such task"; the running-task cap is per client; a foreground call's timeout counts
from when it was asked, even behind the client's own background cells; a bogus id is not echoed back whole.
Cells wait on files the test creates, so "running" is a fact when the test looks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from tests.conftest import connect
from tests.mcp_results import text_of
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("task-owners"))
    try:
        yield proc
    finally:
        proc.stop()


def gated(gate: Path, marker: Path | None = None) -> str:
    """A cell that waits for ``gate`` to exist (and first writes ``marker``, to show it ran)."""
    mark = f"open({str(marker)!r}, 'w').close()\n" if marker is not None else ""
    return f"import os, time\n{mark}while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\n'through'"


@asynccontextmanager
async def two_clients(server: ServeProcess, mode: str) -> AsyncIterator[tuple[Any, Any]]:
    parts = urlsplit(server.url)
    base = f"{parts.scheme}://{parts.netloc}"
    # legacy: two sessions on /mcp, a kernel each, told apart by session; sessionless: a named kernel each
    urls = (f"{base}/mcp", f"{base}/mcp") if mode == "legacy" else (f"{base}/k/alice/mcp", f"{base}/k/bob/mcp")
    async with connect(urls[0], TOKEN, mode=mode) as alice, connect(urls[1], TOKEN, mode=mode) as bob:
        yield alice, bob


async def background(client: Any, code: str) -> str:
    begun = await client.call_tool("execute", {"code": code, "background": True})
    assert not begun.is_error, text_of(begun)
    return begun.structured_content["task_id"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_another_clients_task_is_no_such_task(server: ServeProcess, tmp_path: Path, mode: str) -> None:
    gate = tmp_path / "gate"
    async with two_clients(server, mode) as (alice, bob):
        task_id = await background(alice, gated(gate))
        for tool in ("task_status", "task_result", "task_cancel"):
            stranger = await bob.call_tool(tool, {"task_id": task_id})
            assert stranger.is_error and f"no task {task_id!r}" in text_of(stranger), (tool, text_of(stranger))
        mine = await alice.call_tool("task_status", {"task_id": task_id})
        assert mine.structured_content["status"] == "working"  # bob's cancel did nothing
        gate.touch()
        done = await alice.call_tool("task_result", {"task_id": task_id, "wait": 30})
        assert not done.is_error and text_of(done).startswith("'through'"), text_of(done)


async def test_the_running_task_cap_is_per_client_and_a_refused_task_never_runs(
    server: ServeProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with two_clients(server, "auto") as (alice, bob):
        ids = [await background(alice, gated(gate)) for _ in range(8)]
        ninth = tmp_path / "ninth-ran"
        refused = await alice.call_tool("execute", {"code": gated(gate, ninth), "background": True})
        assert refused.is_error and "at most 8 per client" in text_of(refused), text_of(refused)
        # alice's full quota does not stop bob
        bobs = await background(bob, gated(gate))
        gate.touch()
        for task_id in ids:
            assert not (await alice.call_tool("task_result", {"task_id": task_id, "wait": 30})).is_error
        assert not (await bob.call_tool("task_result", {"task_id": bobs, "wait": 30})).is_error
        assert (await alice.call_tool("execute", {"code": "'idle'"})).content[0].text == "'idle'"
    assert not ninth.exists()  # the refused call's code never ran, then or later


async def test_a_foreground_timeout_counts_from_when_it_was_asked(server: ServeProcess, tmp_path: Path) -> None:
    gate, marker = tmp_path / "gate", tmp_path / "foreground-ran"
    async with two_clients(server, "auto") as (alice, _bob):
        task_id = await background(alice, gated(gate))
        asked = time.monotonic()
        code = f"open({str(marker)!r}, 'w').close()\n'late'"
        behind = await alice.call_tool("execute", {"code": code, "timeout": 2})
        took = time.monotonic() - asked
        assert 1.9 < took < 6, took
        assert behind.is_error and behind.structured_content["status"] == "timeout"
        assert "did not run" in text_of(behind), text_of(behind)
        gate.touch()
        assert not (await alice.call_tool("task_result", {"task_id": task_id, "wait": 30})).is_error
        with anyio.move_on_after(1):  # give a wrongly queued cell the chance to run: it must not
            while not marker.exists():
                await anyio.sleep(0.05)
        assert not marker.exists()
        # with the kernel free, the same timeout is the cell's own
        assert text_of(await alice.call_tool("execute", {"code": "'free'", "timeout": 2})).startswith("'free'")


async def test_a_huge_bogus_task_id_is_cut_in_the_answer(server: ServeProcess) -> None:
    bogus = "x" * 100_000
    async with two_clients(server, "auto") as (alice, _bob):
        for tool in ("task_status", "task_result", "task_cancel"):
            answer = await alice.call_tool(tool, {"task_id": bogus})
            assert answer.is_error and len(text_of(answer)) < 500, (tool, len(text_of(answer)))
            assert "x" * 64 + "'…" in text_of(answer) and "x" * 65 not in text_of(answer)
