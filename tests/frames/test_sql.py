"""The SQL engine of ``query``: real DuckDB over real pandas, polars (eager and lazy), pyarrow and DuckDB
objects; every refusal; the locked connection itself; the time limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from nbmcp.frames.query import sql, sql_child, sql_duckdb

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "orders.parquet"
    pq.write_table(pa.table({"order": range(10_000), "city": ["Oslo", "Lima", "Pune", "Kyiv"] * 2_500}), path)
    return path


@pytest.fixture
def sources(parquet: Path) -> dict:
    return {
        "sales": pd.DataFrame({"city": ["Oslo", "Lima", "Oslo"], "amount": [10.0, 5.5, 2.0]}),
        "cities": pl.DataFrame({"city": ["Oslo", "Lima"], "country": ["NO", "PE"]}),
        "lazy_orders": pl.scan_parquet(parquet),
        "arrow_orders": pa.table({"order": [1, 2], "note": ["x", "y"]}),
        "dataset": ds.dataset(parquet),
        "rel": duckdb.read_parquet(str(parquet)),
        "settings": {"not": "a table"},
    }


def queryable(sources: dict) -> dict:
    return {k: v for k, v in sources.items() if sql.is_queryable(v)}


def test_join_and_group_by_across_backends(sources: dict) -> None:
    result = sql.run_query(
        "SELECT s.city, c.country, sum(amount) AS total FROM sales s JOIN cities c USING (city) "
        "GROUP BY ALL ORDER BY total DESC",
        queryable(sources),
    )
    assert result.rows.to_pylist() == [
        {"city": "Oslo", "country": "NO", "total": 12.0},
        {"city": "Lima", "country": "PE", "total": 5.5},
    ]
    assert result.engine == "duckdb" and result.tables == ["cities", "sales"] and not result.more


@pytest.fixture
def lazy_sources(sources: dict, parquet: Path) -> dict:
    import dask.dataframe as dd
    import ibis

    return {
        **queryable(sources),
        "ibis_orders": ibis.duckdb.connect().read_parquet(str(parquet)),
        "dask_orders": dd.read_parquet(str(parquet), split_row_groups=False).repartition(npartitions=3),
    }


@pytest.mark.parametrize("name", ["lazy_orders", "dataset", "rel", "ibis_orders", "dask_orders"])
def test_lazy_sources_are_queried_by_name(lazy_sources: dict, name: str) -> None:
    sources = lazy_sources
    result = sql.run_query(f"SELECT city, count(*) AS n FROM {name} GROUP BY city ORDER BY city", queryable(sources))
    assert result.rows.to_pylist() == [{"city": c, "n": 2_500} for c in ("Kyiv", "Lima", "Oslo", "Pune")]


def test_streamed_sources_read_only_the_columns_the_query_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DuckDB relation over a table of its own connection streams in as Arrow: only the columns the query names
    are read."""
    from nbmcp.frames.adapters.duckdb_relation import DuckDBSource

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS id, range % 3 AS k, 'x' || range AS label FROM range(10)")
    rel = con.table("t")
    asked: list[list[str] | None] = []
    real_batches = DuckDBSource.batches

    def batches(self: DuckDBSource, columns: list[str] | None, *rest: object) -> object:
        asked.append(columns)
        return real_batches(self, columns, *rest)

    monkeypatch.setattr(DuckDBSource, "batches", batches)
    assert sql.run_query("SELECT k, count(*) AS n FROM r GROUP BY k ORDER BY k", {"r": rel}).rows.num_rows == 3
    assert sql.run_query("SELECT count(*) AS n FROM r", {"r": rel}).rows.to_pylist() == [{"n": 10}]
    joined = sql.run_query("SELECT count(*) AS n FROM r JOIN r AS s USING (id)", {"r": rel})  # read twice
    assert joined.rows.to_pylist() == [{"n": 10}]
    assert sql.run_query("SELECT * FROM r", {"r": rel}).rows.num_columns == 3
    assert asked == [["k"], ["id"], ["id"], None], asked
    empty = rel.filter("id < 0")
    assert sql.run_query("SELECT count(*) AS n, max(k) AS k FROM e", {"e": empty}).rows.to_pylist() == [
        {"n": 0, "k": None}
    ]


def test_a_record_batch_reader_is_refused_not_used_up(sources: dict) -> None:
    reader = pa.table({"a": [1, 2]}).to_reader()
    with pytest.raises(sql.QueryRefused, match="can be read only once"):
        sql.run_query("SELECT sum(a) FROM stream", {**queryable(sources), "stream": reader})
    assert reader.read_all().num_rows == 2  # still whole for read_rows


def test_names_are_case_insensitive_and_ctes_are_not_tables(sources: dict) -> None:
    result = sql.run_query(
        "WITH big AS (SELECT * FROM SALES WHERE amount > 3) SELECT count(*) AS n FROM big", queryable(sources)
    )
    assert result.rows.to_pylist() == [{"n": 2}]


def test_limit_caps_rows_and_says_there_are_more(sources: dict) -> None:
    result = sql.run_query('SELECT * FROM dataset ORDER BY "order"', queryable(sources), limit=3)
    assert [r["order"] for r in result.rows.to_pylist()] == [0, 1, 2] and result.more


def test_save_keeps_up_to_its_cap(sources: dict) -> None:
    result = sql.run_query("SELECT * FROM range(500)", queryable(sources), limit=2, save=True, save_max_rows=100)
    assert result.rows.num_rows == 2 and result.saved.num_rows == 100 and result.saved_truncated
    whole = sql.run_query("SELECT * FROM range(50)", queryable(sources), limit=2, save=True, save_max_rows=100)
    assert whole.saved.num_rows == 50 and not whole.saved_truncated


REFUSED = {
    "two statements": ("SELECT 1; SELECT 2", "2 statements"),
    "insert": ("INSERT INTO sales VALUES ('x', 1)", "INSERT statement, not a SELECT"),
    "copy": ("COPY sales TO '/tmp/nbmcp-leak.csv'", "COPY statement"),
    "attach": ("ATTACH '/tmp/other.db'", "ATTACH statement"),
    "pragma": ("PRAGMA version", "PRAGMA statement"),
    "set": ("SET threads = 1", "SET statement"),
    "install": ("INSTALL httpfs", "statement, not a SELECT"),
    "create": ("CREATE TABLE t AS SELECT 1", "CREATE statement"),
    "read_csv": ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv()"),
    "read_parquet": ("SELECT * FROM read_parquet('x.parquet')", "table function read_parquet()"),
    "file path": ("SELECT * FROM '/etc/passwd'", "files and other databases are not available"),
    "settings table": ("SELECT * FROM duckdb_settings()", "table function duckdb_settings()"),
    "other schema": ("SELECT * FROM other.sales", "files and other databases"),
    "not exposed": ("SELECT * FROM secret_table", "'secret_table', which is not an exposed object"),
    "not a table": ("SELECT * FROM settings", "'settings', which is not an exposed object"),
    "subquery not exposed": ("SELECT * FROM sales WHERE city IN (SELECT city FROM hidden)", "'hidden'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refusals_say_what_is_allowed(sources: dict, case: str) -> None:
    query, expected = REFUSED[case]
    with pytest.raises(sql.QueryRefused) as info:
        sql.run_query(query, queryable(sources))
    message = str(info.value)
    assert expected in message
    # Every refusal says what would work: the allowed form, or the exposed names to use instead.
    assert "allowed: one SELECT" in message or "arrow_orders, cities, dataset, lazy_orders, rel, sales" in message


def test_syntax_errors_are_duckdbs_message(sources: dict) -> None:
    with pytest.raises(sql.QueryError) as info:
        sql.run_query("SELEC city FROM sales", queryable(sources))
    assert not isinstance(info.value, sql.QueryRefused)
    assert "Parser Error" in str(info.value) and "SELEC" in str(info.value)


def test_bad_arguments_name_the_argument(sources: dict) -> None:
    for kwargs, argument in (({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"timeout": 0}, "timeout")):
        with pytest.raises(sql.QueryRefused, match=argument):
            sql.run_query("SELECT 1", queryable(sources), **kwargs)
    with pytest.raises(sql.QueryRefused, match="non-empty string"):
        sql.run_query("  ", queryable(sources))


def test_the_connection_itself_is_locked_and_sees_no_python_variables(parquet: Path) -> None:
    """Defence in depth: what the parser check lets through still meets a connection that cannot do harm."""
    secret = pd.DataFrame({"password": ["hunter2"]})  # noqa: F841 - a replacement scan would find it by name
    con = sql_duckdb.connect("1GB", max_spill_bytes=sql.DEFAULT_MAX_SPILL_BYTES)
    try:
        if sql_child.available():  # a query runs in a forked child, which locks its copy first
            sql_child.prepare(con)
        with pytest.raises(duckdb.CatalogException):
            con.sql("SELECT * FROM secret").fetchall()
        with pytest.raises(duckdb.PermissionException):
            con.sql(f"SELECT * FROM read_parquet('{parquet}')").fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error):
            con.execute("SELECT getenv('HOME')")
    finally:
        con.close()


@pytest.mark.spark
@pytest.mark.timeout(300)  # the first Spark test starts the session's JVM
def test_spark_frames_go_to_spark_sql(spark, sources: dict) -> None:
    events = spark.createDataFrame([("Oslo", 1), ("Lima", 2), ("Oslo", 3)], ["city", "n"])
    tables_before = spark.catalog.listTables()
    result = sql.run_query(
        "SELECT e.city, sum(e.n) AS total FROM events e WHERE e.city <> '{not a placeholder}' "
        "GROUP BY e.city ORDER BY e.city",
        {"events": events},
        timeout=120,  # the first Spark job of a session warms up the JVM
    )
    assert result.engine == "spark"
    assert result.rows.to_pylist() == [{"city": "Lima", "total": 2}, {"city": "Oslo", "total": 4}]
    assert spark.catalog.listTables() == tables_before  # no views left in the user's session
    with pytest.raises(sql.QueryRefused, match=r"mixes Spark frames \(events\) with other objects \(sales\)"):
        sql.run_query("SELECT * FROM events JOIN sales ON true", {**queryable(sources), "events": events})
    with pytest.raises(sql.QueryRefused, match="reflect"):
        sql.run_query("SELECT reflect('java.lang.System', 'getenv', 'HOME') AS h FROM events", {"events": events})
    with pytest.raises(sql.QueryError, match="Spark"):
        sql.run_query("SELECT no_such_column FROM events", {"events": events})


@pytest.mark.spark
@pytest.mark.timeout(120)
def test_spark_time_limit_cancels_the_job(spark) -> None:
    big = spark.range(0, 10**10)
    with pytest.raises(sql.QueryTimeout, match="time limit of 2 s"):
        sql.run_query("SELECT count(*) AS n FROM big a JOIN big b ON a.id % 7 = b.id % 7", {"big": big}, timeout=2)
    small = spark.range(0, 10)
    assert sql.run_query("SELECT count(*) AS n FROM small", {"small": small}).rows.to_pylist() == [{"n": 10}]


def test_time_limit_interrupts_and_the_next_query_runs(sources: dict) -> None:
    started = time.perf_counter()
    with pytest.raises(sql.QueryTimeout, match="interrupted at its time limit of 1 s"):
        sql.run_query("SELECT count(*) FROM range(1000000000) a, range(1000000000) b", queryable(sources), timeout=1)
    assert time.perf_counter() - started < 10
    assert sql.run_query("SELECT 42 AS x", queryable(sources)).rows.to_pylist() == [{"x": 42}]


def test_namespace_sources_are_the_public_frame_variables(sources: dict) -> None:
    namespace = {**sources, "_private": pd.DataFrame({"a": [1]}), "hidden_df": pd.DataFrame(), "n": 3}
    found = sql.namespace_sources(namespace, {"hidden_df"})
    assert set(found) == {"sales", "cities", "lazy_orders", "arrow_orders", "dataset", "rel"}


def test_run_json_over_a_namespace_and_save_as_never_replaces_a_variable(sources: dict) -> None:
    import __main__

    before = dict(vars(__main__))
    vars(__main__).update(queryable(sources))
    try:
        data = json.loads(sql.run_json("SELECT count(*) AS n FROM lazy_orders", 10, 10.0, "order_count"))
        assert data["rows"] == [{"n": 10_000}] and data["saved_as"] == {
            "name": "order_count",
            "rows": 1,
            "truncated": False,
        }
        assert vars(__main__)["order_count"].num_rows == 1
        again = json.loads(sql.run_json("SELECT 2 AS n", 10, 10.0, "order_count"))  # its own result: replaced
        assert "error" not in again and vars(__main__)["order_count"].to_pylist() == [{"n": 2}]
        clash = json.loads(sql.run_json("SELECT 1", 10, 10.0, "sales"))
        assert clash["refused"] and "already a variable" in clash["error"]
        vars(__main__)["order_count"] = "the user's own value now"
        taken = json.loads(sql.run_json("SELECT 1", 10, 10.0, "order_count"))
        assert taken["refused"] and vars(__main__)["order_count"] == "the user's own value now"
        refused = json.loads(sql.run_json("DROP TABLE sales", 10, 10.0))
        assert refused["refused"] and "DROP statement" in refused["error"]
    finally:
        vars(__main__).clear()
        vars(__main__).update(before)
