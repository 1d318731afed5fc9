"""Kernels that are not ipykernel, served honestly: xeus-python keeps the Python adapter (query included),
Deno's TypeScript kernel gets answers that say what works, and a kernel that dies of an interrupt says so.

Each runs behind `nbmcp serve` over stdio with the SDK client. Their kernelspecs are written to a temporary
JUPYTER_PATH with absolute executables (xeus-python's wheel calls a bare `python3.11` from PATH). Skipped
when not installed: `pip install xeus-python deno`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.mcp_results import text_of

pytestmark = pytest.mark.anyio

DENO = Path(sys.executable).parent / "deno"
HAS_XEUS = importlib.util.find_spec("xpython_launcher") is not None


def kernelspec(root: Path, name: str, argv: list[str], language: str) -> None:
    folder = root / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": argv, "display_name": name, "language": language}
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


async def serve(kernel_name: str, jupyter_path: Path, workdir: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--kernel-name", kernel_name, "--notebook", str(workdir / "s.ipynb")],
        cwd=str(workdir),
        env={**os.environ, "PYTHONUNBUFFERED": "1", "JUPYTER_PATH": str(jupyter_path)},
    )
    async with Client(params) as client:
        yield client


@pytest.fixture(scope="module")
async def xeus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    if not HAS_XEUS:
        pytest.skip("xeus-python is not installed: pip install xeus-python")
    root = tmp_path_factory.mktemp("xeus")
    kernelspec(root, "xpython-test", [sys.executable, "-m", "xpython_launcher", "-f", "{connection_file}"], "python")
    async for client in serve("xpython-test", root, root):
        yield client


@pytest.fixture(scope="module")
async def deno(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    if not DENO.exists():
        pytest.skip("Deno is not installed: pip install deno")
    root = tmp_path_factory.mktemp("deno")
    # what `deno jupyter --install` writes, in our own folder
    kernelspec(root, "deno-test", [str(DENO), "jupyter", "--kernel", "--conn", "{connection_file}"], "typescript")
    async for client in serve("deno-test", root, root):
        yield client


async def interrupt_running_cell(client: Client, code: str) -> Any:
    started = await client.call_tool("execute", {"code": code, "background": True})
    task_id = (started.structured_content or {})["task_id"]
    with anyio.fail_after(30):  # the cell runs once its first output arrived
        while "(tail):\nsleeping" not in text_of(await client.call_tool("task_status", {"task_id": task_id})):
            await anyio.sleep(0.05)
    return await client.call_tool("interrupt", {})


async def test_xeus_python_keeps_the_python_adapter(xeus: Client) -> None:
    made = await xeus.call_tool("execute", {"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})"})
    assert not made.is_error, text_of(made)
    listed = await xeus.call_tool("list_variables", {})
    assert not listed.is_error, text_of(listed)
    assert listed.structured_content["kernel"]["language"] == "python"
    assert "df" in {v["name"] for v in listed.structured_content["variables"]}
    rows = await xeus.call_tool("read_rows", {"name": "df", "offset": 1, "limit": 1})
    assert rows.structured_content["rows"] == [{"a": 2}], text_of(rows)
    described = await xeus.call_tool("inspect_variable", {"name": "df"})
    assert described.structured_content["kind"] == "frame", text_of(described)
    summed = await xeus.call_tool("query", {"sql": "SELECT sum(a) AS s FROM df"})
    assert not summed.is_error and summed.structured_content["rows"] == [{"s": 3 + 3}], text_of(summed)


async def test_xeus_python_dies_of_an_interrupt_and_says_what_to_do(xeus: Client) -> None:
    stopped = await interrupt_running_cell(xeus, "print('sleeping', flush=True)\nimport time\ntime.sleep(60)")
    assert stopped.is_error and "died of the interrupt" in text_of(stopped) and "restart()" in text_of(stopped)
    restarted = await xeus.call_tool("restart", {})
    assert not restarted.is_error, text_of(restarted)
    again = await xeus.call_tool("execute", {"code": "print(6 * 7)"})
    assert "42" in text_of(again)


async def test_deno_executes_and_inspection_says_what_works(deno: Client) -> None:
    # not its output: Deno's kernel at times sends a cell's result after the cell's 'idle' status
    made = await deno.call_tool("execute", {"code": "const answer = 6 * 7; answer"})
    assert not made.is_error and made.structured_content["status"] == "ok", text_of(made)
    for tool, arguments in [
        ("list_variables", {}),
        ("read_rows", {"name": "answer"}),
        ("query", {"sql": "SELECT 1"}),
    ]:
        result = await deno.call_tool(tool, arguments)
        text = text_of(result)
        assert result.is_error and "runs typescript" in text and "What works here: execute" in text, text
        assert "None: None" not in text
    inspected = await deno.call_tool("inspect_variable", {"name": "answer"})
    text = text_of(inspected)
    assert "None: None" not in text and "inspect_request" in text, text


async def test_deno_dies_of_an_interrupt_and_says_what_to_do(deno: Client) -> None:
    code = "console.log('sleeping'); await new Promise((resolve) => setTimeout(resolve, 60000));"
    stopped = await interrupt_running_cell(deno, code)
    assert stopped.is_error and "died of the interrupt" in text_of(stopped), text_of(stopped)
    restarted = await deno.call_tool("restart", {})
    assert not restarted.is_error, text_of(restarted)
