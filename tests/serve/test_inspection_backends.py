"""`nbmcp serve`'s inspection tools see lazy sources too: a real `nbmcp serve` over HTTP, the SDK client in
both protocol eras, a real kernel holding DuckDB, polars lazy and Dask frames over a Parquet file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import connect
from tests.mcp_results import text_of
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
ROWS = 120_000
SOURCES = ["rel", "lazy", "dframe"]


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeProcess]:
    """One `nbmcp serve --transport http --shared` (one kernel for both eras' clients), data set up once."""
    workdir = tmp_path_factory.mktemp("serve-data")
    path = workdir / "t.parquet"
    proc = ServeProcess(workdir, "--shared")
    try:
        async with connect(proc.url, TOKEN, mode="legacy") as c:
            setup = await c.call_tool(
                "execute",
                {
                    "code": f"""
import duckdb, polars as pl, pyarrow as pa, pyarrow.parquet as pq, dask.dataframe as dd
pq.write_table(pa.table({{"id": pa.array(range({ROWS}), pa.int64()), "tag": ["a", "b", "c"] * ({ROWS} // 3)}}),
               {str(path)!r}, row_group_size=10_000)
rel = duckdb.connect().read_parquet({str(path)!r})
lazy = pl.scan_parquet({str(path)!r})
dframe = dd.read_parquet({str(path)!r}, split_row_groups=True)
"""
                },
            )
            assert not setup.is_error, text_of(setup)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["legacy", "auto"])
async def client(request: pytest.FixtureRequest, server: ServeProcess) -> AsyncIterator[Any]:
    async with connect(server.url, TOKEN, mode=request.param) as c:
        yield c


async def test_list_variables_shows_lazy_sources_without_counting_them(client: Any) -> None:
    listed = await client.call_tool("list_variables", {})
    by_name = {v["name"]: v for v in listed.structured_content["variables"]}
    for name in SOURCES:
        assert by_name[name]["shape"][1] == 2, by_name[name]  # columns known; rows only if free
    assert by_name["rel"]["type"].startswith("duckdb")


async def test_read_rows_pages_each_backend_at_an_offset(client: Any) -> None:
    for name in SOURCES:
        result = await client.call_tool("read_rows", {"name": name, "offset": 100_000, "limit": 2})
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["rows"] == [{"id": 100_000, "tag": "b"}, {"id": 100_001, "tag": "c"}], name
        assert data["total_rows"] == ROWS and data["count_capped"] is False  # under the default cap: exact
        assert f"rows 100,000-100,001 of {ROWS:,}" in text_of(result)  # one number format throughout
        bad = await client.call_tool("read_rows", {"name": name, "columns": ["nope"]})
        assert bad.is_error and "valid columns: ['id', 'tag']" in text_of(bad)


async def test_inspect_variable_gives_the_backend_profile(client: Any) -> None:
    result = await client.call_tool("inspect_variable", {"name": "lazy"})
    data: dict[str, Any] = result.structured_content
    assert data["kind"] == "frame" and data["frame_kind"] == "polars.LazyFrame"
    assert data["profile"]["sampled"] is True and data["profile"]["rows_profiled"] == 100_000
    tag = next(c for c in data["profile"]["columns"] if c["name"] == "tag")
    assert tag["distinct"] == 3 and tag["nulls"] == 0
    assert "profile:" in text_of(result) and "first 100,000 rows" in text_of(result)


def test_the_probe_file_is_what_the_kernel_runs() -> None:
    from nbmcp.serve.kernel_tools.inspection import probe_source
    from nbmcp.serve.languages import probe

    assert probe_source().startswith(Path(probe.__file__).read_text(encoding="utf-8"))
