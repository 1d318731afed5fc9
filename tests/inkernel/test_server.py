"""The in-kernel server end to end: a real ipykernel, `%load_ext nbmcp`, the SDK client over HTTP, both eras."""

from __future__ import annotations

import base64
import io
import json
import os
import stat

import anyio
import pytest
from mcp.types import ImageContent, TextContent

from tests.conftest import KernelHandle, connect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

MODES = ["legacy", "auto"]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    out = kernel.run("%load_ext nbmcp").raise_for_error()
    kernel.run("import nbmcp").raise_for_error()
    info = kernel.value(
        "{'url': nbmcp.info().url, 'token': nbmcp.info().token, 'file': nbmcp.info().connection_file, "
        "'kernel_id': nbmcp.info().kernel_id}"
    )
    info["banner"] = out.stdout
    return info


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def test_load_ext_prints_how_to_connect(server: dict, kernel: KernelHandle) -> None:
    banner = server["banner"]
    assert server["url"] in banner
    assert server["file"] in banner
    assert "nbmcp bridge --kernel-id" in banner and "%mcp config" in banner
    assert server["token"] not in banner  # the token is never printed
    assert server["url"].startswith("http://127.0.0.1:")
    assert server["kernel_id"] == kernel.kernel_id


def test_connection_file_is_private(server: dict) -> None:
    mode = stat.S_IMODE(os.stat(server["file"]).st_mode)
    assert mode == 0o600
    with open(server["file"]) as f:
        content = json.load(f)
    assert content["url"] == server["url"] and content["token"] == server["token"]
    assert isinstance(content["pid"], int) and content["kernel_id"] == server["kernel_id"]


@pytest.mark.parametrize("mode", MODES)
async def test_tool_schema_description_and_call(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        '''
@nbmcp.tool
def top_customers(n: int = 10, region: str = "all") -> list[dict]:
    """Customers with the highest revenue.

    Args:
        n: how many customers to return.
        region: a region name, or "all".
    """
    return [{"customer": f"c{i}", "region": region} for i in range(n)]
'''
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        tool = tools["top_customers"]
        assert tool.description.startswith("Customers with the highest revenue.")
        props = tool.input_schema["properties"]
        assert props["n"]["type"] == "integer" and props["n"]["default"] == 10
        assert props["n"]["description"] == "how many customers to return."
        assert props["region"]["description"].startswith("a region name")
        assert {"list_objects", "describe_object", "read_rows"} <= set(tools)
        assert "execute" not in tools  # no code execution unless the user turns it on
        result = await client.call_tool("top_customers", {"n": 2, "region": "EU"})
        assert not result.is_error
        assert result.structured_content == {
            "result": [{"customer": "c0", "region": "EU"}, {"customer": "c1", "region": "EU"}]
        }


@pytest.mark.parametrize("mode", MODES)
async def test_redefining_a_tool_replaces_it_and_notifies(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run("@nbmcp.tool\ndef version() -> str:\n    return 'one'\n").raise_for_error()
    received = anyio.Event()

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            received.set()

    async with connect(server["url"], server["token"], mode=mode, message_handler=on_message) as client:
        assert text_of(await client.call_tool("version", {})) == "one"
        if mode == "legacy":
            kernel.run("@nbmcp.tool\ndef version(x: int = 0) -> str:\n    return 'two'\n").raise_for_error()
            with anyio.fail_after(10):
                await received.wait()
        else:
            async with client.listen(tools_list_changed=True) as subscription:
                kernel.run("@nbmcp.tool\ndef version(x: int = 0) -> str:\n    return 'two'\n").raise_for_error()
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
                assert type(event).__name__ == "ToolsListChanged"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "x" in tools["version"].input_schema["properties"]
        assert text_of(await client.call_tool("version", {})) == "two"


def test_unsupported_signatures_fail_at_decoration(kernel: KernelHandle) -> None:
    for code, needle in [
        ("@nbmcp.tool\ndef f(*values): pass", "'values'"),
        ("@nbmcp.tool\ndef f(a, /, b): pass", "'a'"),
        ("@nbmcp.tool\ndef f(**options): pass", "'options'"),
        ("@nbmcp.tool\ndef f(items=[]): pass", "'items'"),
    ]:
        out = kernel.run(code)
        assert out.error is not None and out.error.startswith("TypeError") and needle in out.error, out.error


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
async def test_prompts(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        '''
@nbmcp.prompt
def explain_column(column: str) -> str:
    """Ask the assistant to explain a column."""
    return f"Explain what the column {column} means."
'''
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert prompts["explain_column"].description == "Ask the assistant to explain a column."
        result = await client.get_prompt("explain_column", {"column": "revenue"})
        assert "revenue" in result.messages[0].content.text


def test_magics_status_tools_and_usage_errors(server: dict, kernel: KernelHandle) -> None:
    status = kernel.run("%mcp").raise_for_error().stdout
    assert server["url"] in status and "tools:" in status
    tools = kernel.run("%mcp tools").raise_for_error().stdout
    assert "read_rows" in tools and "built-in" in tools
    config = kernel.run("%mcp config vscode").raise_for_error().stdout
    assert server["url"] in json.dumps(json.loads(config))
    # IPython reports a UsageError on stderr, with what to type instead.
    bad = kernel.run("%mcp frobnicate")
    assert "UsageError" in bad.stderr and "frobnicate" in bad.stderr and "%mcp tools" in bad.stderr
    bad = kernel.run("%mcp log many")
    assert "UsageError" in bad.stderr and "%mcp log [N]" in bad.stderr


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


@pytest.mark.parametrize("mode", MODES)
async def test_user_resources_and_templates(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        '''
@nbmcp.resource("docs://readme", mime_type="text/markdown")
def readme() -> str:
    """The project readme."""
    return "# Readme"

@nbmcp.resource("items://{item_id}")
def item(item_id: str) -> dict:
    return {"id": item_id, "price": 3}
'''
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert resources["docs://readme"].mime_type == "text/markdown"
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "items://{item_id}" in templates
        readme = (await client.read_resource("docs://readme")).contents[0]
        assert readme.text == "# Readme" and readme.mime_type == "text/markdown"
        item = json.loads((await client.read_resource("items://42")).contents[0].text)
        assert item == {"id": "42", "price": 3}


def test_traitlets_config_from_the_shell() -> None:
    from tests.conftest import start_kernel

    handle = start_kernel()
    try:
        handle.run(
            "cfg = get_ipython().config\ncfg.NbMCP.output_budget = 1234\ncfg.NbMCP.image_max_px = 512\n"
            "%load_ext nbmcp\nimport nbmcp"
        ).raise_for_error()
        handle.run("served = nbmcp.inkernel.lifecycle.current_server().mcp_server").raise_for_error()
        settings = handle.value("[served.output_budget, served.image_max_px]")
        assert settings == [1234, 512]
    finally:
        handle.shutdown()


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
