"""The in-kernel call pipeline end to end: a real kernel, `%load_ext nbmcp`, the SDK client over HTTP.

What a tool returns, prints and displays reaches the client; errors name the user's frames; worker-thread,
main-thread and async tools, their timeouts, and the output budget.
"""

from __future__ import annotations

import base64
import io

import anyio
import pytest
from mcp.types import ImageContent

from tests.conftest import KernelHandle, connect
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.mark.parametrize("mode", MODES)
async def test_return_values_become_text_tables_and_images(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        """
import pandas as pd, polars as pl, matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
from PIL import Image

@nbmcp.tool
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": range(100), "b": ["x"] * 100})

@nbmcp.tool
def polars_frame():
    return pl.DataFrame({"k": [1, 2, 3]})

@nbmcp.tool
def figure():
    fig, ax = plt.subplots(figsize=(40, 30), dpi=100)
    ax.plot([1, 2, 3])
    return fig

@nbmcp.tool
def picture():
    return Image.new("RGB", (4000, 1000), "red")

@nbmcp.tool
def greeting(name: str) -> str:
    return f"hello {name}"
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.call_tool("frame", {})
        assert "| a" in text_of(result) and "100" in text_of(result)
        assert result.structured_content["total_rows"] == 100
        assert result.structured_content["columns"] == ["a", "b"]
        result = await client.call_tool("polars_frame", {})
        assert result.structured_content["total_rows"] == 3
        from PIL import Image

        for tool, expected in (("figure", None), ("picture", (1568, 392))):
            result = await client.call_tool(tool, {})
            images = [c for c in result.content if isinstance(c, ImageContent)]
            assert len(images) == 1, result
            picture = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
            assert 800 < max(picture.size) <= 1568  # drawn at 4000 px, sent sized for a model
            if expected:
                assert picture.size == expected
        assert text_of(await client.call_tool("greeting", {"name": "Ada"})) == "hello Ada"


@pytest.mark.parametrize("mode", MODES)
async def test_bad_input_and_crashing_tools(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        """
def _helper(x):
    raise ValueError(f"bad value {x}")

@nbmcp.tool
def crash(x: int) -> int:
    return _helper(x)
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.call_tool("crash", {"x": "not a number"})
        assert result.is_error and "x" in text_of(result)
        result = await client.call_tool("crash", {"x": 3})
        assert result.is_error
        text = text_of(result)
        assert "ValueError: bad value 3" in text
        assert "_helper" in text and "crash" in text  # the user's frames
        assert "anyio" not in text and "mcp/server" not in text  # not nbmcp's or the SDK's
        result = await client.call_tool("describe_object", {"name": "nope"})
        assert result.is_error and "nope" in text_of(result)
        # The server lives on.
        assert not (await client.call_tool("list_objects", {})).is_error


@pytest.mark.parametrize("mode", MODES)
async def test_tool_answers_while_a_cell_runs_and_keeps_prints_apart(
    server: dict, kernel: KernelHandle, mode: str
) -> None:
    kernel.run(
        """
@nbmcp.tool
def chatty() -> str:
    print("printed by the tool")
    return "done"
"""
    ).raise_for_error()
    msg_id = kernel.start_cell("import time\nprint('cell starts')\ntime.sleep(3)\nprint('cell ends')")
    try:
        async with connect(server["url"], server["token"], mode=mode) as client:
            with anyio.fail_after(2):  # the cell sleeps 3 s: this can only pass while it runs
                result = await client.call_tool("chatty", {})
            assert "printed by the tool" in text_of(result) and "done" in text_of(result)
    finally:
        cell_output = kernel.wait_idle(msg_id, timeout=30)
    assert cell_output == "cell starts\ncell ends\n"  # the user's own output is all there, and only it
    out = kernel.run("print('next cell')")
    assert "printed by the tool" not in out.stdout


async def test_a_tool_that_never_returns_does_not_block_others(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        """
import threading
_forever = threading.Event()

@nbmcp.tool(timeout=1)
def stuck() -> str:
    _forever.wait(30)
    return "late"

@nbmcp.tool
def quick() -> str:
    return "quick"
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        async with anyio.create_task_group() as tg:
            results = {}

            async def call(name: str) -> None:
                results[name] = await client.call_tool(name, {})

            tg.start_soon(call, "stuck")
            with anyio.fail_after(5):
                results["quick"] = await client.call_tool("quick", {})
        assert text_of(results["quick"]) == "quick"
        assert results["stuck"].is_error and "did not finish within 1" in text_of(results["stuck"])
    kernel.run("_forever.set()").raise_for_error()


@pytest.mark.parametrize("mode", MODES)
async def test_async_tool_with_context_reports_progress(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        """
import asyncio

@nbmcp.tool
async def long_fit(epochs: int, ctx: nbmcp.Context) -> str:
    for epoch in range(1, epochs + 1):
        await ctx.report_progress(epoch, epochs, f"epoch {epoch}")
        await asyncio.sleep(0)
    return f"fitted {epochs} epochs"
"""
    ).raise_for_error()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with connect(server["url"], server["token"], mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert list(tools["long_fit"].input_schema["properties"]) == ["epochs"]  # ctx is not an argument
        result = await client.call_tool("long_fit", {"epochs": 3}, progress_callback=on_progress)
        assert text_of(result) == "fitted 3 epochs"
    assert [p[0] for p in progress] == [1, 2, 3] and progress[-1][2] == "epoch 3"


@pytest.mark.parametrize("mode", MODES)
async def test_big_output_is_cut_to_the_budget_and_kept(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run("@nbmcp.tool\ndef huge() -> str:\n    return 'HEAD' + 'x' * 100_000 + 'TAIL'").raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.call_tool("huge", {})
        text = text_of(result)
        assert text.startswith("HEAD") and text.endswith("TAIL") and len(text) < 21_000
        assert result.structured_content["truncated"] is True
        uri = result.structured_content["output_uri"]
        assert uri in text
        full = (await client.read_resource(uri)).contents[0].text
        assert len(full) == 100_008


async def test_what_a_tool_displays_goes_to_the_client(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        """
from IPython.display import display, Markdown

@nbmcp.tool
def shows() -> str:
    display(Markdown("**shown by the tool**"))
    return "returned"
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("shows", {})
    # Captured by a thread-local hook that swallows the message: it reached the client instead of the notebook.
    assert text_of(result) == "**shown by the tool**\nreturned"


async def test_main_thread_tools_run_on_the_kernels_main_thread(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        """
import threading

@nbmcp.tool(main_thread=True)
def on_main() -> bool:
    return threading.current_thread() is threading.main_thread()

@nbmcp.tool
def on_worker() -> bool:
    return threading.current_thread() is threading.main_thread()
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        assert text_of(await client.call_tool("on_main", {})) == "true"
        assert text_of(await client.call_tool("on_worker", {})) == "false"


async def test_a_tools_own_timeout_error_is_its_error_not_ours(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        """
@nbmcp.tool
def flaky_service() -> str:
    raise TimeoutError("the upstream service did not answer")
"""
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("flaky_service", {})
    assert result.is_error and "TimeoutError: the upstream service did not answer" in text_of(result)
    assert "did not finish within" not in text_of(result)


async def test_a_main_thread_tool_waiting_behind_a_cell_times_out_with_its_limit(
    server: dict, kernel: KernelHandle
) -> None:
    kernel.run(
        "@nbmcp.tool(main_thread=True, timeout=0.5)\ndef between_cells() -> str:\n    return 'ran'"
    ).raise_for_error()
    msg_id = kernel.start_cell("import time\nprint('busy', flush=True)\ntime.sleep(2)")
    try:
        async with connect(server["url"], server["token"]) as client:
            result = await client.call_tool("between_cells", {})
        assert result.is_error and "did not finish within 0.5 s" in text_of(result)
    finally:
        kernel.wait_idle(msg_id, timeout=30)
