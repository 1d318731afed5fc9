"""``nbmcp serve --transport http`` run in process (``run_http``): cancelled, it stops serving, removes its
connection file (it holds the token) and lets the cancellation through instead of returning as if done."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from nbmcp.serve.provider import ServeOptions
from nbmcp.serve.run import run_http

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_a_cancelled_http_server_says_so_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("NBMCP_TOKEN", "cancel-test-token")
    # a kernel per client: none starts before a client calls
    options = ServeOptions(transport="http", record=False, root=tmp_path)
    serving = asyncio.ensure_future(run_http(options))
    for _ in range(600):  # its connection file appears once it listens
        files = list(tmp_path.glob("nbmcp-serve-*.json"))
        if files or serving.done():
            break
        await asyncio.sleep(0.05)
    assert files, serving
    url = json.loads(files[0].read_text())["url"]
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(url)).status_code == 401  # serving, behind its token
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert serving.cancelled()
    assert not files[0].exists()
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
