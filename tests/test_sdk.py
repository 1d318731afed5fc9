"""How nbmcp's servers serve tools (:class:`nbmcp.sdk.ToolServer`): descriptions as a reader sees a docstring,
a mistyped tool name answered with the closest one; and what a newcomer meets first in both servers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

import nbmcp
from tests.conftest import KernelHandle, connect
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


def check_descriptions(tools) -> None:
    """Every description reads like prose: no source indentation, no paragraph break inside a sentence."""
    for tool in tools:
        text = tool.description or ""
        assert text and not re.search(r"\n[ \t]", text), (tool.name, text)
        assert not re.search(r"\n\n[a-z]", text), (tool.name, text)  # a sentence cut in two paragraphs


async def test_serve_tools_read_cleanly_and_a_mistyped_name_gets_the_closest(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "nbmcp", "serve", "--no-record"], cwd=tmp_path)
    async with Client(params, mode="legacy") as client:
        assert client.server_info.version == nbmcp.__version__
        check_descriptions((await client.list_tools()).tools)
        typo = await client.call_tool("exectue", {"code": "1"})
        assert typo.is_error and text_of(typo) == "no tool 'exectue'; did you mean 'execute'?"
        other = await client.call_tool("zzz", {})
        assert other.is_error and "no tool 'zzz'; the tools are: " in text_of(other) and "execute" in text_of(other)

        await client.call_tool(
            "execute", {"code": "big = list(range(2_000_000))\nimport pandas as pd\ndf = pd.DataFrame({'a': [1]})"}
        )
        page = await client.call_tool("read_rows", {"name": "big", "offset": 1_999_990, "limit": 5})
        assert text_of(page).startswith("rows 1,999,990-1,999,994 of 2,000,000 in `big`"), text_of(page)
        missing = await client.call_tool("read_rows", {"name": "nothing_like_it"})
        assert missing.is_error, text_of(missing)
        assert "name 'nothing_like_it' is not defined in the kernel; its tables (frames and lists): big, df" in text_of(
            missing
        )


async def test_in_kernel_tools_read_cleanly_and_a_mistyped_name_gets_the_closest(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    url, token = kernel.value("nbmcp.info().url"), kernel.value("nbmcp.info().token")
    async with connect(url, token, mode="legacy") as client:
        assert client.server_info.version == nbmcp.__version__  # it was ""
        check_descriptions((await client.list_tools()).tools)
        typo = await client.call_tool("reed_rows", {"name": "x"})
        assert typo.is_error and text_of(typo) == "no tool 'reed_rows'; did you mean 'read_rows'?"


def test_mcp_tools_shows_one_whole_sentence_or_a_cut_at_a_word(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp").raise_for_error()
    shown = kernel.run("%mcp tools").stdout
    lines = [line for line in shown.splitlines() if line.strip()]
    assert any(line.startswith("query ") for line in lines), shown
    for line in lines:
        summary = line[34:]
        assert summary.endswith((".", "…")), line
        assert not summary.endswith(",…"), line
