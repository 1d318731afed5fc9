"""``query``'s bounds outside DuckDB's memory_limit in a real kernel with ``%load_ext nbmcp``, through the SDK
client: long values cut in the engine and said so, value bombs refused with the kernel's memory untouched,
result bytes (c.NbMCP.max_resource_bytes), spill disk (c.NbMCP.query_max_spill_bytes) in a directory of
nbmcp's own and never the kernel's cwd, and integers beyond 2**53 as strings."""

from __future__ import annotations

import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cwd = tmp_path_factory.mktemp("kernel-cwd")
    kernel.run(f"import os\nos.chdir({str(cwd)!r})").raise_for_error()
    config = {"query_memory_limit": "100MB", "query_max_spill_bytes": 40 * 1024 * 1024, "max_resource_bytes": 200_000}
    setup = """
import numpy as np, pandas as pd
big = pd.DataFrame({"v": np.arange(100_000)})
nbmcp.expose(big, "big")
def peak_mb():
    return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
"""
    return {**start_server(kernel, setup, config=config), "cwd": str(cwd)}


async def test_long_values_are_cut_and_big_integers_are_strings(server: dict, kernel: KernelHandle) -> None:
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool(
            "query", {"sql": "SELECT repeat('x', 5000000) AS s, sum(v) AS total, sum(v) * 10000000 AS huge FROM big"}
        )
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["rows"] == [{"s": "x" * 2000, "total": 4_999_950_000, "huge": "49999500000000000"}]
        assert data["cut"][0]["column"] == "s" and data["cut"][0]["sizes"] == [5_000_000]
        assert data["big_integers_as_strings"] == ["huge"]
        text = text_of(result)
        assert "substr(s, start, length)" in text and "in huge are given as strings" in text
        bomb = await client.call_tool("query", {"sql": "SELECT repeat('x', 2000000000) AS s"})
        assert bomb.is_error and "repeat() would build a value of more than 64.0 MiB" in text_of(bomb)
        assert kernel.value("peak_mb()") < 1000


async def test_result_bytes_and_spill_disk_are_bounded_by_the_owners_settings(
    server: dict, kernel: KernelHandle
) -> None:
    async with connect(server["url"], server["token"]) as client:
        wide = await client.call_tool("query", {"sql": "SELECT v, repeat('x', 1000) AS pad FROM big", "limit": 1000})
        assert wide.is_error and "c.NbMCP.max_resource_bytes" in text_of(wide), text_of(wide)
        spill = await client.call_tool(
            "query", {"sql": "SELECT count(*) FROM (SELECT DISTINCT a.v * 1000000 + b.v FROM big a, big b)"}
        )
        assert spill.is_error, text_of(spill)
        assert "needed more than 40.0 MiB of disk to spill to" in text_of(spill)
        assert "c.NbMCP.query_max_spill_bytes" in text_of(spill)
    assert kernel.value(f"sorted(os.listdir({server['cwd']!r}))") == []  # no .tmp in the kernel's cwd
