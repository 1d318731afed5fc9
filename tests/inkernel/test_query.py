"""The built-in ``query`` tool in a real kernel with ``%load_ext nbmcp``, through the SDK client, both
protocol eras: DuckDB over exposed pandas, polars lazy, pyarrow and DuckDB objects; refusals; read-only
mode; the time limit; ``save_as``."""

from __future__ import annotations

import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> dict:
    parquet = tmp_path_factory.mktemp("query") / "orders.parquet"
    setup = f"""
import duckdb, pandas as pd, polars as pl, pyarrow as pa, pyarrow.parquet as pq, pyarrow.dataset as ds
pq.write_table(pa.table({{"order": range(20_000), "city": ["Oslo", "Lima"] * 10_000}}), {str(parquet)!r})
sales = pd.DataFrame({{"city": ["Oslo", "Lima", "Oslo"], "amount": [10.0, 5.5, 2.0]}})
nbmcp.expose(sales, "sales", description="orders")
nbmcp.expose(pl.scan_parquet({str(parquet)!r}), "orders_lazy")
nbmcp.expose(ds.dataset({str(parquet)!r}), "orders_ds")
nbmcp.expose(duckdb.read_parquet({str(parquet)!r}), "orders_rel")
nbmcp.expose({{"alpha": 1}}, "settings")
not_exposed = pd.DataFrame({{"secret": [1]}})
"""
    return start_server(kernel, setup, config={"query_timeout": 2.0})


@pytest.mark.parametrize("mode", MODES)
async def test_query_joins_exposed_frames_by_name(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        tool = {t.name: t for t in (await client.list_tools()).tools}["query"]
        assert tool.annotations.read_only_hint and set(tool.input_schema["properties"]) == {"sql", "limit", "save_as"}
        result = await client.call_tool(
            "query",
            {
                "sql": "SELECT o.city, count(*) AS orders, any_value(s.total) AS sales FROM orders_lazy o "
                "JOIN (SELECT city, sum(amount) AS total FROM sales GROUP BY city) s USING (city) "
                "GROUP BY o.city ORDER BY o.city"
            },
        )
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["columns"] == ["city", "orders", "sales"]
        assert data["rows"] == [
            {"city": "Lima", "orders": 10_000, "sales": 5.5},
            {"city": "Oslo", "orders": 10_000, "sales": 12.0},
        ]
        assert data["engine"] == "duckdb" and data["tables"] == ["orders_lazy", "sales"] and not data["more"]
        assert "| Oslo | 10000 | 12.0 |" in text_of(result) and "2 rows from duckdb" in text_of(result)


@pytest.mark.parametrize("name", ["orders_ds", "orders_rel"])
async def test_arrow_datasets_and_duckdb_relations(server: dict, name: str) -> None:
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("query", {"sql": f'SELECT max("order") AS top FROM {name}'})
        assert result.structured_content["rows"] == [{"top": 19_999}], text_of(result)


async def test_a_relation_over_its_own_connections_table_is_streamed_and_the_answer_says_so(
    server: dict, kernel: KernelHandle
) -> None:
    kernel.run(
        "_own = duckdb.connect()\n_own.execute('CREATE TABLE t AS SELECT range AS n FROM range(7)')\n"
        "nbmcp.expose(_own.table('t'), 'numbers_rel')"
    ).raise_for_error()
    try:
        async with connect(server["url"], server["token"]) as client:
            streamed = await client.call_tool("query", {"sql": "SELECT max(n) AS top FROM numbers_rel"})
            assert streamed.structured_content["rows"] == [{"top": 6}], text_of(streamed)
            [note] = streamed.structured_content["notes"]
            assert note.startswith("numbers_rel streamed as Arrow") and f"note: {note}" in text_of(streamed)
            replanned = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM orders_rel"})
            assert replanned.structured_content["notes"] == [] and "note:" not in text_of(replanned)
    finally:
        kernel.run("nbmcp.unexpose('numbers_rel')").raise_for_error()


@pytest.mark.parametrize("mode", MODES)
async def test_refusals_list_what_is_exposed(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        for query, expected in [
            ("SELECT * FROM not_exposed", "'not_exposed', which is not an exposed object"),
            ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv()"),
            ("DELETE FROM sales", "DELETE statement, not a SELECT"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELECT * FROM settings", "'settings', which is not an exposed object"),
        ]:
            result = await client.call_tool("query", {"sql": query})
            assert result.is_error, query
            text = text_of(result)
            assert expected in text
            assert "orders_ds, orders_lazy, orders_rel, sales" in text or "allowed: one SELECT" in text
        syntax = await client.call_tool("query", {"sql": "SELECT FROM WHERE"})
        assert syntax.is_error and "Parser Error" in text_of(syntax)
        bad_limit = await client.call_tool("query", {"sql": "SELECT 1", "limit": 0})
        assert bad_limit.is_error and "limit must be" in text_of(bad_limit)


async def test_limit_caps_the_rows(server: dict) -> None:
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("query", {"sql": 'SELECT * FROM orders_ds ORDER BY "order"', "limit": 5})
        data = result.structured_content
        assert [r["order"] for r in data["rows"]] == [0, 1, 2, 3, 4] and data["more"]
        assert "the first 5; the result has more" in text_of(result)


async def test_time_limit_interrupts_and_the_kernel_keeps_working(server: dict, kernel: KernelHandle) -> None:
    async with connect(server["url"], server["token"]) as client:
        slow = await client.call_tool("query", {"sql": "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"})
        assert slow.is_error and "interrupted at its time limit of 2 s" in text_of(slow)
        assert kernel.value("1 + 1") == 2
        after = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM sales"})
        assert after.structured_content["rows"] == [{"n": 3}]


async def test_save_as_exposes_the_result_for_paging(server: dict, kernel: KernelHandle) -> None:
    async with connect(server["url"], server["token"]) as client:
        saved = await client.call_tool(
            "query", {"sql": "SELECT * FROM orders_lazy WHERE city = 'Oslo'", "limit": 3, "save_as": "oslo"}
        )
        assert not saved.is_error, text_of(saved)
        assert saved.structured_content["saved_as"] == {"name": "oslo", "rows": 10_000, "truncated": False}
        listed = await client.call_tool("list_objects", {})
        assert "oslo" in {o["name"] for o in listed.structured_content["objects"]}
        page = await client.call_tool("read_rows", {"name": "oslo", "offset": 5_000, "limit": 2})
        assert [r["order"] for r in page.structured_content["rows"]] == [10_000, 10_002]
        # Its own result can be replaced; an object the notebook exposed cannot.
        again = await client.call_tool("query", {"sql": "SELECT 1 AS x", "save_as": "oslo"})
        assert not again.is_error
        clash = await client.call_tool("query", {"sql": "SELECT 1 AS x", "save_as": "sales"})
        assert clash.is_error and "already exposed by the notebook" in text_of(clash)
        kernel.run('nbmcp.expose(sales, "oslo")').raise_for_error()  # the owner takes the name over
        taken = await client.call_tool("query", {"sql": "SELECT 1 AS x", "save_as": "oslo"})
        assert taken.is_error and "already exposed by the notebook" in text_of(taken)


async def test_served_in_read_only_mode(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp mode read-only").raise_for_error()
    try:
        async with connect(server["url"], server["token"]) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"query", "list_objects", "read_rows"} <= names and "execute" not in names
            result = await client.call_tool("query", {"sql": "SELECT sum(amount) AS total FROM sales"})
            assert result.structured_content["rows"] == [{"total": 17.5}]
    finally:
        kernel.run("%mcp mode tools").raise_for_error()
