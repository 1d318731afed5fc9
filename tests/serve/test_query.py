"""``query`` in ``nbmcp serve``: SQL over the kernel's variables, run in the kernel (real HTTP server, one
shared kernel, the SDK client in both protocol eras)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.conftest import connect
from tests.mcp_results import MODES, text_of
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

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
    proc = ServeProcess(
        tmp_path_factory.mktemp("query"), "--shared", "--query-timeout", "2", "--query-max-spill-bytes", "12345678"
    )
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


async def test_results_are_bounded_in_the_kernel_and_the_client_is_told(ready: ServeProcess) -> None:
    async with connect(ready.url, TOKEN) as client:
        result = await client.call_tool(
            "query",
            {
                "sql": "SELECT repeat('x', 5000000) AS s, 12499997500000::HUGEINT AS total, "
                "1152921504606846976::HUGEINT AS huge"
            },
        )
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["rows"] == [{"s": "x" * 2000, "total": 12_499_997_500_000, "huge": "1152921504606846976"}]
        # The spill bound reached the kernel's query databases (query itself may not read settings: it refuses
        # current_setting); read on the kernel's DuckDB connections directly.
        code = (
            "import gc\nspill = set()\nfor c in gc.get_objects():\n    if type(c).__name__ == 'DuckDBPyConnection':\n"
            "        try:\n            spill.add(c.execute(\"SELECT current_setting('max_temp_directory_size')\")"
            ".fetchone()[0])\n        except Exception:\n            pass\n'11.7 MiB' in spill"
        )
        spill = await client.call_tool("execute", {"code": code})
        assert text_of(spill).splitlines()[0] == "True", text_of(spill)
        setting = await client.call_tool("query", {"sql": "SELECT current_setting('temp_directory') AS t"})
        assert setting.is_error and "current_setting(), which reveals the kernel's settings" in text_of(setting)
        assert data["cut"][0]["sizes"] == [5_000_000] and data["big_integers_as_strings"] == ["huge"]
        assert "substr(s, start, length)" in text_of(result) and "in huge are given as strings" in text_of(result)
        bomb = await client.call_tool("query", {"sql": "SELECT range(0, 2000000000) AS r"})
        assert bomb.is_error and "range() would build a value of more than 4,194,304 elements" in text_of(bomb)


async def test_time_limit_interrupts_and_the_kernel_answers(ready: ServeProcess) -> None:
    async with connect(ready.url, TOKEN) as client:
        # streams, holding no memory: a cross join would spill (past --query-max-spill-bytes) before its time limit
        slow = await client.call_tool("query", {"sql": "SELECT max(hash(i)) FROM range(1000000000000) t(i)"})
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


def test_the_engine_runs_from_the_sources_sent_in_a_kernel_without_nbmcp() -> None:
    """What nbmcp serve sends is the whole engine: installed under its versioned name in a Python where nbmcp
    cannot be imported, it answers a query, and each of its modules is the copy that was sent."""
    from nbmcp.frames.query import sql
    from nbmcp.serve.kernel_tools.query import ENGINE_MODULES, sql_module, sql_source

    source = sql_source()
    assert source.startswith(Path(sql.__file__).read_text(encoding="utf-8"))
    assert sql_module().startswith("_nbmcp_sql_") and sql_module() == sql_module()
    program = textwrap.dedent(
        """
        import json, sys, types
        sys.modules["nbmcp"] = None  # as in a kernel without nbmcp: importing it fails
        import pandas as pd
        name, source = sys.argv[1], sys.stdin.read()
        engine = sys.modules[name] = types.ModuleType(name)
        exec(source, engine.__dict__)
        sales = pd.DataFrame({"city": ["Oslo", "Lima", "Oslo"], "amount": [1, 2, 3]})
        print(engine.run_json("SELECT city, sum(amount) AS total FROM sales GROUP BY city ORDER BY city", 10, 10.0))
        print(json.dumps(sorted(module.__name__ for module in engine.kernel_modules.values())))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", program, sql_module()], input=source, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    answer, modules = (json.loads(line) for line in ran.stdout.strip().splitlines()[-2:])
    assert answer["rows"] == [{"city": "Lima", "total": 2}, {"city": "Oslo", "total": 4}], answer
    name = sql_module()
    assert modules == sorted([name, *(f"{name}_{module}" for module in ENGINE_MODULES)])
