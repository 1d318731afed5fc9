"""``query`` in ``nbmcp serve``: SQL over the kernel's variables, run in the kernel (real HTTP server, one
shared kernel, the SDK client in both protocol eras)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp.types import TextContent

from tests.conftest import connect
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
MODES = ["legacy", "auto"]

SETUP = """
import duckdb, pandas as pd, polars as pl, pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"order": range(20_000), "city": ["Oslo", "Lima"] * 10_000}), "orders.parquet")
sales = pd.DataFrame({"city": ["Oslo", "Lima", "Oslo"], "amount": [10.0, 5.5, 2.0]})
orders = pl.scan_parquet("orders.parquet")
rel = duckdb.read_parquet("orders.parquet")
config = {"alpha": 1}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("query"), "--shared", "--query-timeout", "2")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
async def ready(server: ServeProcess) -> ServeProcess:
    async with connect(server.url, TOKEN, mode="legacy") as client:
        result = await client.call_tool("execute", {"code": SETUP})
        assert not result.is_error, result
    return server


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.mark.parametrize("mode", MODES)
async def test_query_over_kernel_variables(ready: ServeProcess, mode: str) -> None:
    async with connect(ready.url, TOKEN, mode=mode) as client:
        result = await client.call_tool(
            "query",
            {
                "sql": "SELECT o.city, count(*) AS n, any_value(s.total) AS total FROM orders o JOIN "
                "(SELECT city, sum(amount) AS total FROM sales GROUP BY city) s USING (city) GROUP BY o.city "
                "ORDER BY o.city"
            },
        )
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["rows"] == [
            {"city": "Lima", "n": 10_000, "total": 5.5},
            {"city": "Oslo", "n": 10_000, "total": 12.0},
        ]
        assert data["columns"] == ["city", "n", "total"] and data["engine"] == "duckdb"
        assert "| Oslo | 10000 | 12.0 |" in text_of(result)
        relation = await client.call_tool("query", {"sql": 'SELECT max("order") AS top FROM rel', "limit": 1})
        assert relation.structured_content["rows"] == [{"top": 19_999}]


@pytest.mark.parametrize("mode", MODES)
async def test_refusals_name_the_kernels_tables(ready: ServeProcess, mode: str) -> None:
    async with connect(ready.url, TOKEN, mode=mode) as client:
        for sql, expected in [
            ("SELECT * FROM config", "'config', which is not an exposed object; exposed objects: orders, rel, sales"),
            ("SELECT * FROM read_parquet('orders.parquet')", "table function read_parquet()"),
            ("UPDATE sales SET amount = 0", "UPDATE statement, not a SELECT"),
            ("SELECT * FROM 'orders.parquet'", "files and other databases are not available"),
        ]:
            result = await client.call_tool("query", {"sql": sql})
            assert result.is_error and expected in text_of(result), text_of(result)
        syntax = await client.call_tool("query", {"sql": "SELECT * FORM sales"})
        assert syntax.is_error and "Parser Error" in text_of(syntax)
        unchanged = await client.call_tool("execute", {"code": "float(sales.amount.sum())"})
        assert text_of(unchanged).splitlines()[0] == "17.5"


async def test_time_limit_interrupts_and_the_kernel_answers(ready: ServeProcess) -> None:
    async with connect(ready.url, TOKEN) as client:
        slow = await client.call_tool("query", {"sql": "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"})
        assert slow.is_error and "interrupted at its time limit of 2 s" in text_of(slow)
        after = await client.call_tool("execute", {"code": "1 + 1"})
        assert not after.is_error and text_of(after).splitlines()[0] == "2"


async def test_query_answers_while_a_cell_runs(ready: ServeProcess) -> None:
    async with connect(ready.url, TOKEN, mode="legacy") as client, anyio.create_task_group() as tg:
        running, done = anyio.Event(), anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            running.set()

        async def busy() -> None:
            code = "print('running', flush=True)\nimport time\ntime.sleep(3)"
            await client.call_tool("execute", {"code": code}, progress_callback=on_progress)
            done.set()

        tg.start_soon(busy)
        with anyio.fail_after(10):
            await running.wait()
        result = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM sales"})
        assert result.structured_content["rows"] == [{"n": 3}] and not done.is_set()


async def test_save_as_makes_a_new_variable_only(ready: ServeProcess) -> None:
    async with connect(ready.url, TOKEN) as client:
        saved = await client.call_tool(
            "query", {"sql": "SELECT * FROM orders WHERE city = 'Lima'", "limit": 2, "save_as": "lima"}
        )
        assert saved.structured_content["saved_as"] == {"name": "lima", "rows": 10_000, "truncated": False}
        page = await client.call_tool("read_rows", {"name": "lima", "offset": 5_000, "limit": 2})
        assert [r["order"] for r in page.structured_content["rows"]] == [10_001, 10_003]
        clash = await client.call_tool("query", {"sql": "SELECT 1", "save_as": "sales"})
        assert clash.is_error and "already a variable in the kernel" in text_of(clash)
        kept = await client.call_tool("execute", {"code": "type(sales).__name__"})
        assert "DataFrame" in text_of(kept)


def test_source_sent_to_the_kernel_is_the_engine_module() -> None:
    from nbmcp.frames import sql
    from nbmcp.serve.query import sql_source

    assert sql_source() == Path(sql.__file__).read_text(encoding="utf-8")
