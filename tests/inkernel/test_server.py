"""The in-kernel server end to end: a real ipykernel, `%load_ext nbmcp`, the SDK client over HTTP, both eras."""

from __future__ import annotations

import json
import os
import stat

import anyio
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import server_info, start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return {**start_server(kernel), **server_info(kernel, "connection_file", "kernel_id")}


def test_load_ext_prints_how_to_connect(server: dict, kernel: KernelHandle) -> None:
    banner = server["banner"]
    assert server["url"] in banner
    assert server["connection_file"] in banner
    assert "%mcp config claude" in banner and "%mcp config vscode|cursor" in banner
    assert server["token"] not in banner  # the token is never printed
    assert server["url"].startswith("http://127.0.0.1:")
    assert server["kernel_id"] == kernel.kernel_id


def test_connection_file_is_private(server: dict) -> None:
    mode = stat.S_IMODE(os.stat(server["connection_file"]).st_mode)
    assert mode == 0o600
    with open(server["connection_file"]) as f:
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
