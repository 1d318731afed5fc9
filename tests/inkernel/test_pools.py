"""Stuck user tools cannot freeze the in-kernel server: a real kernel, the SDK client over HTTP, both eras.

A tool that never returns, called 45 times at once, gets no more than the per-client and pool limits of threads; the
rest are answered "busy" at once; the built-in reads, resource reads and other clients' tools keep answering; and a
client that goes away (closed stream, or ``notifications/cancelled``) cancels its calls, so everything recovers.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest
from mcp.types import Implementation

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import eventually, start_server, wait_for
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

PROMPT = 5.0  # seconds: "promptly" on a loaded 2-core machine; the failure this guards against is forever

TOOLS = """
import threading, time, asyncio
import pandas as pd
release = threading.Event()
outcomes = {}
started = set()

@nbmcp.tool
def hang() -> str:
    # A Python loop (not one blocking C call): an abandoned call's asynchronous exception reaches it.
    while not release.wait(0.02):
        pass
    return "released"

@nbmcp.tool
def quick(x: int) -> int:
    return x + 1

@nbmcp.tool
def spin(tag: str) -> str:
    started.add(tag)
    try:
        while True:
            time.sleep(0.01)
    except BaseException as exc:
        outcomes[tag] = type(exc).__name__
        raise

@nbmcp.tool
async def aspin(tag: str) -> str:
    started.add(tag)
    try:
        await asyncio.sleep(3600)
    except BaseException as exc:
        outcomes[tag] = type(exc).__name__
        raise
    return "woke"

@nbmcp.resource("notes://stuck")
def stuck_note() -> str:
    while not release.wait(0.02):
        pass
    return "note"

df = pd.DataFrame({"a": range(100)})
nbmcp.expose(df, "df")
"""


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, TOOLS)


def pool_status(kernel: KernelHandle) -> dict:
    return kernel.value(
        "(lambda s: {'running': s.running, 'abandoned': s.abandoned})"
        "(nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status())"
    )


def named(name: str) -> Implementation:
    return Implementation(name=name, version="1")


async def test_stuck_calls_get_busy_at_once_and_reads_keep_answering(server: dict, kernel: KernelHandle) -> None:
    """One client floods `hang` 45 times: 8 run, 37 are refused at once; everything else still answers."""
    kernel.run("release.clear()").raise_for_error()
    results: list = []
    async with connect(server["url"], server["token"], client_info=named("flooder")) as flooder:

        async def call_hang() -> None:
            results.append(await flooder.call_tool("hang", {}))

        async with anyio.create_task_group() as tg:
            for _ in range(45):
                tg.start_soon(call_hang)
            with anyio.fail_after(PROMPT):  # the refusals come back at once, not after a timeout
                while len(results) < 37:
                    await anyio.sleep(0.02)
            assert all(r.is_error and "c.NbMCP.max_calls_per_client" in text_of(r) for r in results), results[:2]
            assert pool_status(kernel)["running"] == 8

            for mode in ("auto", "legacy"):
                async with connect(server["url"], server["token"], mode=mode, client_info=named("other")) as other:
                    with anyio.fail_after(PROMPT):
                        listed = await other.call_tool("list_objects", {})
                        rows = await other.call_tool("read_rows", {"name": "df", "limit": 3})
                        described = await other.call_tool("describe_object", {"name": "df"})
                        index = await other.read_resource("nbmcp://objects")
                        page = await other.read_resource("nbmcp://objects/df/rows/0/2")
                        fresh = await other.call_tool("quick", {"x": 41})
                    assert not listed.is_error and "df" in text_of(listed)
                    assert not rows.is_error and rows.structured_content["total_rows"] == 100
                    assert not described.is_error
                    assert '"df"' in index.contents[0].text and '"rows"' in page.contents[0].text
                    assert text_of(fresh) == "42", fresh
            # The flooding client itself is at its limit: its next call is refused at once, and says why.
            with anyio.fail_after(PROMPT):
                refused = await flooder.call_tool("quick", {"x": 1})
            assert refused.is_error and "max_calls_per_client" in text_of(refused)
            kernel.run("release.set()").raise_for_error()
    assert [text_of(r) for r in results[37:]] == ["released"] * 8
    assert wait_for(kernel, "nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status().running == 0")


async def test_a_full_pool_answers_busy_and_recovers_when_clients_leave(server: dict, kernel: KernelHandle) -> None:
    """Six clients fill the 40-thread pool (and a stuck user resource) and then go away: the calls are cancelled."""
    kernel.run("release.clear()").raise_for_error()
    threads_before = kernel.value("threading.active_count()")
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(server["url"], server["token"], client_info=named(f"client-{i}")))
            for i in range(6)
        ]
        async with anyio.create_task_group() as tg:
            for client in clients:
                for _ in range(7):
                    tg.start_soon(client.call_tool, "hang", {})
            with anyio.fail_after(PROMPT * 2):
                while pool_status(kernel)["running"] < 40:
                    await anyio.sleep(0.05)
            async with connect(server["url"], server["token"], client_info=named("late")) as late:
                with anyio.fail_after(PROMPT):
                    busy = await late.call_tool("quick", {"x": 1})
                    listed = await late.call_tool("list_objects", {})
                    with pytest.raises(Exception, match="busy"):  # a user resource is user code: refused too
                        await late.read_resource("notes://stuck")
                assert busy.is_error and "the kernel is busy: 40 tool calls are running" in text_of(busy)
                assert "c.NbMCP.max_tool_threads" in text_of(busy)
                assert not listed.is_error
            # The clients give up mid-call (their streams close): the server cancels the calls.
            tg.cancel_scope.cancel()
    assert wait_for(kernel, "nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status().running == 0")
    # Their threads got CallAbandoned at their next bytecode and ended: nothing stays abandoned.
    assert wait_for(
        kernel,
        "not nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status().abandoned "
        f"and threading.active_count() <= {threads_before}",
    ), (pool_status(kernel), kernel.value("threading.active_count()"), threads_before)
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("quick", {"x": 2})
        assert text_of(result) == "3"
    kernel.run("release.set()").raise_for_error()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("tool", ["spin", "aspin"])
async def test_a_cancelled_call_stops_its_tool(server: dict, kernel: KernelHandle, mode: str, tool: str) -> None:
    """The client gives up on a call (2026 era: closes the stream; handshake era: notifications/cancelled)."""
    tag = f"{tool}-{mode}"
    async with connect(server["url"], server["token"], mode=mode) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, tool, {"tag": tag})
            assert await eventually(kernel, f"{tag!r} in started")
            tg.cancel_scope.cancel()
        expected = "CallAbandoned" if tool == "spin" else "CancelledError"
        assert await eventually(kernel, f"outcomes.get({tag!r}) == {expected!r}"), kernel.value("outcomes")
        result = await client.call_tool("quick", {"x": 0})  # the session lives on
        assert text_of(result) == "1"
    assert wait_for(kernel, "nbmcp.inkernel.lifecycle.current_server().mcp_server.tool_pool.status().running == 0")
