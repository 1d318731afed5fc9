"""A task result only where the era and both sides allow it: the MCP Inspector 2.12's handshake (protocol 2025-11-25,
the 2026 tasks extension in its capabilities) gets `execute`'s plain result, from all three servers, and the code
runs once. A call the server refuses itself runs no code.

Raw JSON-RPC (:mod:`tests.raw_mcp`), since the SDK client never sends that handshake; real servers, real kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import KernelHandle
from tests.raw_mcp import RawSession, raw_http, raw_stdio, texts
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def marked(marker: Path, value: str = "6 * 7") -> str:
    """Code that appends a line to ``marker`` (so a test can count how often it ran), then gives ``value``."""
    return f"with open({str(marker)!r}, 'a') as f:\n    f.write('ran\\n')\n{value}"


def runs(marker: Path) -> int:
    return marker.read_text().count("ran\n") if marker.exists() else 0


async def check_plain_execute(raw: RawSession, marker: Path, **extra: Any) -> None:
    """The Inspector's handshake, then `execute`: a plain result (no task), the code ran exactly once; the 2026
    tasks methods are not served in this era; a call the server refuses itself runs nothing."""
    init = await raw.initialize()
    assert "extensions" not in init["capabilities"] and "tasks" not in init["capabilities"]
    answer = await raw.call_tool("execute", {"code": marked(marker), **extra})
    assert "error" not in answer, answer
    result = answer["result"]
    assert result.get("resultType") in (None, "complete") and "task" not in result, result
    assert result["isError"] is False, result
    assert "42" in texts(answer)
    assert runs(marker) == 1
    assert (await raw.request("tasks/get", {"taskId": "anything"}))["error"]["code"] == -32601  # method not found
    refused = await raw.call_tool("execute", {"code": marked(marker), "timeout": -1, **extra})
    assert refused["result"]["isError"] is True and "timeout must be a positive number" in texts(refused)[0]
    assert runs(marker) == 1


async def test_serve_stdio(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    async with raw_stdio(["serve", "--no-record"], cwd=tmp_path, log=tmp_path / "stderr.log") as raw:
        await check_plain_execute(raw, marker)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("negotiation-http"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("path", ["/mcp", "/k/inspector/mcp", "/mcp/k/inspector2"])
async def test_serve_http(http_server: ServeProcess, tmp_path: Path, path: str) -> None:
    marker = tmp_path / "ran.txt"
    parts = urlsplit(http_server.url)
    url = f"{parts.scheme}://{parts.netloc}{path}"
    async with raw_http(url, TOKEN) as raw:
        await check_plain_execute(raw, marker)


async def test_in_kernel_server_in_execute_mode(kernel: KernelHandle, tmp_path: Path) -> None:
    kernel.run("%load_ext nbmcp").raise_for_error()
    kernel.run("import nbmcp\n%mcp approve all\n%mcp mode execute").raise_for_error()
    info = kernel.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")
    marker = tmp_path / "ran.txt"
    async with raw_http(info["url"], info["token"]) as raw:
        init = await raw.initialize()
        assert "extensions" not in init["capabilities"]
        answer = await raw.call_tool("execute", {"code": marked(marker)})
        assert "error" not in answer and answer["result"]["isError"] is False, answer
        assert "task" not in answer["result"] and texts(answer)[-1] == "42"
        assert runs(marker) == 1
        assert (await raw.request("tasks/get", {"taskId": "anything"}))["error"]["code"] == -32601
        # refused by the owner's policy: nothing runs
        kernel.run("%mcp approve none").raise_for_error()
        refused = await raw.call_tool("execute", {"code": marked(marker)})
        assert refused["result"]["isError"] is True and "does not allow" in texts(refused)[0]
        assert runs(marker) == 1


@pytest.mark.timeout(180)
async def test_jupyter_server_extension(tmp_path: Path) -> None:
    from tests.jupyter_helpers import jupyter_server

    marker = tmp_path / "ran.txt"
    with jupyter_server() as js:
        js.start_notebook_kernel("inspected.ipynb")
        async with raw_http(js.url + "nbmcp/mcp", js.token) as raw:
            await check_plain_execute(raw, marker, notebook="inspected.ipynb")
