"""Timed-out sync tools do not leak threads for ever: a real kernel, `%load_ext nbmcp`, the SDK client over HTTP.

A timed-out call's thread is abandoned and sent an asynchronous exception: a tool looping in Python ends at once;
one blocked in C ends when that call returns, and until then it is counted, shown by `%mcp` and the panel, and past
the limit its tool is refused with an error that says why.
"""

from __future__ import annotations

import time

import anyio
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server, wait_for
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

TOOLS = """
import threading, time
gate = threading.Event()
outcomes = []

@nbmcp.tool(timeout=0.2)
def loop() -> str:
    while True:  # Python bytecode between short sleeps: the asynchronous exception gets in
        time.sleep(0.002)

@nbmcp.tool(timeout=0.2)
def blocked() -> str:
    try:
        gate.wait()  # one blocking C call: the asynchronous exception waits until it returns
        return "woke"
    except BaseException as exc:
        outcomes.append(type(exc).__name__)
        raise

@nbmcp.tool
def quick() -> str:
    return "ok"

quick_threads = []

@nbmcp.tool
def quick_here() -> str:
    quick_threads.append(threading.get_native_id())  # never reused soon, unlike get_ident()
    return "ok"
"""
POOL = "nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status()"


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, TOOLS)


async def test_timed_out_python_loops_give_their_threads_back(server: dict, kernel: KernelHandle) -> None:
    threads_before = kernel.value("threading.active_count()")
    async with connect(server["url"], server["token"]) as client:
        for _ in range(5):  # 20 timed-out calls, 4 at a time (the most one tool may have abandoned)
            results: list = []

            async def call(results: list = results) -> None:
                results.append(await client.call_tool("loop", {}))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(call)
            assert all(r.is_error and "did not finish within 0.2 s" in text_of(r) for r in results), results
            assert await anyio.to_thread.run_sync(wait_for, kernel, f"not {POOL}.abandoned")
    threads_after = wait_for(kernel, f"threading.active_count() <= {threads_before} and threading.active_count()")
    assert threads_after, (threads_before, kernel.value("threading.active_count()"))


async def test_threads_stuck_in_c_are_abandoned_counted_shown_and_refused_past_the_limit(
    server: dict, kernel: KernelHandle
) -> None:
    kernel.run("gate.clear(); outcomes.clear()").raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        results: list = []

        async def call() -> None:
            results.append(await client.call_tool("blocked", {}))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(call)
        assert all(r.is_error and "did not finish within 0.2 s" in text_of(r) for r in results), results
        assert kernel.value(f"{POOL}.abandoned") == {"blocked": 4}

        started = time.monotonic()
        refused = await client.call_tool("blocked", {})
        assert time.monotonic() - started < 2.0  # at once, not after its timeout
        assert refused.is_error
        assert "'blocked' is refused for now: 4 of its earlier calls timed out" in text_of(refused)
        assert text_of(await client.call_tool("quick", {})) == "ok"  # other tools are not affected

        status = kernel.run("%mcp").raise_for_error().stdout
        assert "blocked (4, refused until they end)" in status, status
        kernel.run("import nbmcp.inkernel.oversight.panel as _panel; _p = _panel.show_panel()").raise_for_error()
        try:
            assert wait_for(kernel, "'blocked (4, refused until they end)' in _p.shown.message")
        finally:
            kernel.run("_p.close()").raise_for_error()

        # The C call returns: the pending exception ends each thread, the count drops, the tool is served again.
        kernel.run("gate.set()").raise_for_error()
        assert wait_for(kernel, f"not {POOL}.abandoned")
        assert kernel.value("outcomes") == ["CallAbandoned"] * 4
        assert text_of(await client.call_tool("blocked", {})) == "woke"
        assert "refused" not in kernel.run("%mcp").raise_for_error().stdout


async def test_reused_threads_never_carry_an_abandoned_calls_exception_into_the_next_call(
    server: dict, kernel: KernelHandle
) -> None:
    """Pool threads are reused: quick calls run beside calls being abandoned, on the same threads, and all answer."""
    kernel.run("quick_threads.clear()").raise_for_error()
    quick: list = []
    async with connect(server["url"], server["token"]) as client:
        for _ in range(4):
            looped: list = []

            async def loop_call(looped: list = looped) -> None:
                looped.append(await client.call_tool("loop", {}))

            async def quick_calls(looped: list = looped) -> None:
                while len(looped) < 4:  # until every loop call was abandoned, and then some
                    quick.append(await client.call_tool("quick_here", {}))
                for _ in range(5):
                    quick.append(await client.call_tool("quick_here", {}))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(loop_call)
                for _ in range(3):
                    tg.start_soon(quick_calls)
            assert all(r.is_error and "did not finish within 0.2 s" in text_of(r) for r in looped), looped
            assert await anyio.to_thread.run_sync(wait_for, kernel, f"not {POOL}.abandoned")
    assert [text_of(r) for r in quick] == ["ok"] * len(quick)
    threads = kernel.value("quick_threads")
    assert len(threads) == len(quick) and len(set(threads)) < len(threads) / 3  # the calls shared their threads
