"""``query`` over DuckDB relations: a relation over files is re-planned from its own SQL on the query's locked
connection, with exactly its files allowed (projection and filters push down into the Parquet scan); one that reads
what only its own connection has streams in as Arrow and the answer says so; the assistant's own SQL still cannot
read the allowed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbmcp.frames.adapters.duckdb_relation import DuckDBSource
from nbmcp.frames.query import query_answer, sql, sql_child, sql_duckdb

pytestmark = pytest.mark.timeout(60)
CITIES = ["Oslo", "Lima", "Pune", "Kyiv"]


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("relations")
    path = folder / "orders.parquet"
    pq.write_table(pa.table({"order": range(10_000), "city": CITIES * 2_500, "amount": [1.5] * 10_000}), path)
    (folder / "secret.csv").write_text("password\nhunter2\n")
    pq.write_table(pa.table({"salary": [1_000_000]}), folder / "salaries.parquet")
    return path


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The queries' connections (cursors of a warm database), kept open until the test ends so it can look at how
    they planned the sources."""
    kept: list[Any] = []
    release = sql_duckdb.release
    monkeypatch.setattr(sql_duckdb, "release", kept.append)
    yield kept
    for cursor in kept:
        release(cursor)


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    """The columns each Arrow stream of a DuckDB relation was asked for (a re-planned relation streams nothing)."""
    asked: list[list[str] | None] = []
    real_batches = DuckDBSource.batches

    def batches(self: DuckDBSource, columns: list[str] | None, *rest: object) -> object:
        asked.append(columns)
        return real_batches(self, columns, *rest)

    monkeypatch.setattr(DuckDBSource, "batches", batches)
    return asked


def _opened(con: Any) -> tuple[list[str], list[str]]:
    """The files and directories a query connection may open beyond a plain one's (DuckDB itself adds its spill
    directory and WAL files)."""
    settings = "SELECT current_setting('allowed_paths'), current_setting('allowed_directories')"
    [(locked,)] = con.execute("SELECT current_setting('lock_configuration')").fetchall()
    plain = sql_duckdb.connect("64MB", max_spill_bytes=0, forks=not locked)  # the same kind: kernel's or child's
    try:
        base_paths, base_dirs = plain.execute(settings).fetchall()[0]
    finally:
        plain.close()
    paths, dirs = con.execute(settings).fetchall()[0]
    [(spill,)] = con.execute("SELECT current_setting('temp_directory')").fetchall()
    dirs = [d for d in dirs if d.rstrip("/") != spill.rstrip("/")]
    return sorted(set(paths) - set(base_paths)), sorted(set(dirs) - set(base_dirs))


def _explain(con: Any, query: str) -> str:
    return "\n".join(row[1] for row in con.sql(f"EXPLAIN {query}").fetchall())


def test_a_parquet_relation_is_replanned_in_the_locked_connection_with_pushdown(
    parquet: Path, connections: list[Any], streamed: list
) -> None:
    rel = duckdb.read_parquet(str(parquet))
    result = sql.run_query(
        'SELECT city, count(*) AS n FROM orders WHERE "order" >= 9000 GROUP BY city', {"orders": rel}
    )
    assert sorted(result.rows.to_pylist(), key=lambda r: r["city"]) == [{"city": c, "n": 250} for c in sorted(CITIES)]
    assert result.notes == [] and streamed == []  # nothing crossed as Arrow
    [con] = connections
    # The relation is DuckDB's own Parquet scan on the query's connection: the filter and the projection reach it.
    plan = _explain(con, 'SELECT city FROM orders WHERE "order" >= 9000')
    assert "PARQUET" in plan.upper() and "ARROW" not in plan.upper(), plan
    assert "Projections: city" in plan and "order>=9000" in plan.replace(" ", ""), plan
    # That connection opens exactly the relation's file (besides DuckDB's own temp and WAL entries), with external
    # access off and its configuration locked. Its database stays warm for the next query, so it keeps no file
    # blocks in memory (DuckDB's external file cache is off) and gives freed memory back (allocator threads).
    assert _opened(con) == ([str(parquet)], [])
    settings = ("enable_external_access", "lock_configuration", "enable_external_file_cache")
    query = "SELECT " + ", ".join(f"current_setting('{name}')" for name in (*settings, "allocator_background_threads"))

    def as_a_query_sees_it(con: duckdb.DuckDBPyConnection, _: dict) -> tuple:
        refused = []
        for other in (parquet.parent / "secret.csv", parquet.parent / "salaries.parquet"):
            try:
                con.sql(f"SELECT * FROM '{other}'").fetchall()
            except duckdb.PermissionException:
                refused.append(other.name)
        try:
            con.execute("SET allowed_directories = ['/']")
            locked = False
        except duckdb.InvalidInputException as exc:
            locked = "locked" in str(exc)
        return con.sql(query).fetchall()[0], refused, locked

    [(locked,)] = con.sql("SELECT current_setting('lock_configuration')").fetchall()
    if locked:  # a query that builds only numbers runs in the kernel, on a database locked from the start
        seen = as_a_query_sees_it(con, {})
    else:  # one that may build values runs in a forked child, which locks its copy of the database first
        errors = {"QueryError": sql.QueryError}
        seen = sql_child.run_in_child(as_a_query_sees_it, con, {}, 2**31, 30, errors, "timed out", "out of memory")
    assert seen == ((False, True, False, True), ["secret.csv", "salaries.parquet"], True)


def test_relations_built_with_filter_project_aggregate_are_replanned(parquet: Path, streamed: list) -> None:
    rel = (
        duckdb.read_parquet(str(parquet))
        .filter('"order" % 2 = 0')
        .project("city, amount")
        .aggregate("city, sum(amount) AS total")
    )
    written = duckdb.sql(f"SELECT city, \"order\" FROM read_parquet('{parquet}') WHERE city = 'Lima'")
    globbed = duckdb.read_parquet(str(parquet.parent / "orders*.parquet"))
    named = duckdb.sql(f"FROM '{parquet}' WHERE city = 'Kyiv'")  # DuckDB's file replacement scan
    sources = {"totals": rel, "lima": written, "globbed": globbed, "named": named}
    totals = sql.run_query("SELECT city, total FROM totals ORDER BY city", sources)
    assert totals.rows.to_pylist() == [{"city": c, "total": 3_750.0} for c in ("Oslo", "Pune")] and not totals.notes
    joined = sql.run_query('SELECT count(*) AS n FROM lima a JOIN lima b USING ("order")', sources)  # read twice
    assert joined.rows.to_pylist() == [{"n": 2_500}] and not joined.notes
    assert sql.run_query("SELECT count(*) AS n FROM globbed", sources).rows.to_pylist() == [{"n": 10_000}]
    assert sql.run_query("SELECT count(*) AS n FROM named", sources).rows.to_pylist() == [{"n": 2_500}]
    assert streamed == []
    assert sql_duckdb.relation_plan(globbed).directories == [str(parquet.parent) + "/"]
    assert sql_duckdb.relation_plan(named).paths == [str(parquet)] and not sql_duckdb.relation_plan(named).plain_parquet
    assert sql_duckdb.relation_plan(duckdb.sql(f"SELECT * FROM '{parquet}'")).plain_parquet


def test_a_relation_over_its_own_connections_table_streams_and_the_answer_says_so(
    parquet: Path, connections: list[Any], streamed: list
) -> None:
    own = duckdb.connect()
    own.execute("CREATE TABLE orders AS SELECT range AS id, range % 3 AS k FROM range(30)")
    own.execute("CREATE MACRO twice(x) AS x * 2")
    sources = {
        "orders_rel": own.table("orders"),
        "doubled": own.sql(f"SELECT twice(\"order\") AS o FROM read_parquet('{parquet}')"),  # a macro of its own
    }
    result = sql.run_query("SELECT k, count(*) AS n FROM orders_rel GROUP BY k ORDER BY k", sources)
    assert result.rows.to_pylist() == [{"k": k, "n": 10} for k in range(3)]
    [note] = result.notes
    assert note.startswith("orders_rel streamed as Arrow") and "the table orders" in note, note
    assert streamed == [["k"]]  # still only the columns the query names
    assert _opened(connections[0]) == ([], [])
    macro = sql.run_query("SELECT max(o) AS m FROM doubled", sources)
    assert macro.rows.to_pylist() == [{"m": 19_998}]
    assert macro.notes[0].startswith("doubled streamed as Arrow") and "twice" in macro.notes[0], macro.notes
    payload = query_answer.payload(result, sql.shown_records(result.rows))
    assert payload["notes"] == result.notes
    from nbmcp.serve.kernel_tools.query import query_text

    assert f"note: {note}" in query_text(payload)
    own.close()


def test_a_relation_over_a_python_object_streams(streamed: list) -> None:
    frame = pa.table({"a": [1, 2, 3]})  # noqa: F841 - found by DuckDB's replacement scan, on its own connection
    rel = duckdb.sql("SELECT a FROM frame")
    result = sql.run_query("SELECT sum(a) AS s FROM r", {"r": rel})
    assert result.rows.to_pylist() == [{"s": 6}] and "a Python object" in result.notes[0]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_parquet('{path}')",
        "SELECT * FROM parquet_scan('{path}')",
        "SELECT * FROM read_parquet('{folder}/*.parquet')",
        "SELECT * FROM read_csv('{folder}/secret.csv')",
        "SELECT * FROM '{path}'",
        "SELECT * FROM orders, read_parquet('{folder}/salaries.parquet')",
        "SELECT (SELECT count(*) FROM read_text('{folder}/secret.csv')) AS n FROM orders",
        "SELECT * FROM orders UNION ALL SELECT * FROM glob('{folder}/*')",
    ],
)
def test_the_assistant_cannot_read_the_allowed_files_or_their_neighbours(parquet: Path, query: str) -> None:
    rel = duckdb.read_parquet(str(parquet.parent / "orders*.parquet"))  # its folder is allowed to the engine
    with pytest.raises(sql.QueryRefused):
        sql.run_query(query.format(path=parquet, folder=parquet.parent), {"orders": rel})


def test_run_json_carries_the_notes(parquet: Path) -> None:
    import __main__

    own = duckdb.connect()
    own.execute("CREATE TABLE t AS SELECT 1 AS a")
    vars(__main__).update(nbmcp_rel_table=own.table("t"), nbmcp_rel_file=duckdb.read_parquet(str(parquet)))
    try:
        data = json.loads(sql.run_json("SELECT count(*) AS n FROM nbmcp_rel_table", 10, 10.0))
        assert data["rows"] == [{"n": 1}] and "nbmcp_rel_table streamed as Arrow" in data["notes"][0]
        data = json.loads(sql.run_json("SELECT count(*) AS n FROM nbmcp_rel_file", 10, 10.0))
        assert data["rows"] == [{"n": 10_000}] and data["notes"] == []
    finally:
        del vars(__main__)["nbmcp_rel_table"], vars(__main__)["nbmcp_rel_file"]
        own.close()


def test_queries_share_a_warm_database_but_not_their_views(
    parquet: Path, connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []
    real = sql_duckdb.connect
    monkeypatch.setattr(sql_duckdb, "connect", lambda *args, **kwargs: opened.append(args) or real(*args, **kwargs))
    rel, small = duckdb.read_parquet(str(parquet)), pa.table({"n": [1, 2]})
    first = sql.run_query("SELECT count(*) AS n FROM orders", {"orders": rel}, memory_limit="1001MB")
    second = sql.run_query("SELECT sum(n) AS s FROM small", {"orders": rel, "small": small}, memory_limit="1001MB")
    assert first.rows.to_pylist() == [{"n": 10_000}] and second.rows.to_pylist() == [{"s": 3}]
    assert len(opened) == 2  # one database per set of allowed files (none for the second query), each opened once
    assert sql.run_query("SELECT 1 AS one", {"small": small}, memory_limit="1001MB").rows.num_rows == 1
    assert len(opened) == 2
    # Each query has a connection of its own to that database: the third does not see what the second registered.
    assert connections[1].sql("SELECT sum(n) AS s FROM small").fetchall() == [(3,)]
    with pytest.raises(duckdb.CatalogException):
        connections[2].sql("SELECT * FROM small").fetchall()


def test_a_retired_database_is_closed_with_its_spill_directory(parquet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(sql_duckdb, "_WARM_DATABASES", 1)
    rel = duckdb.read_parquet(str(parquet))
    sql.run_query("SELECT count(*) AS n FROM orders", {"orders": rel}, memory_limit="1002MB")
    [(key, database)] = [(k, d) for k, d in sql_duckdb._warm.items() if k[0] == "1002MB"]
    [(spill,)] = database.con.execute("SELECT current_setting('temp_directory')").fetchall()
    assert os.path.isdir(spill) and database.users == 0
    sql.run_query("SELECT 1 AS one", {}, memory_limit="1003MB")  # a third set of settings: the oldest goes
    assert key not in sql_duckdb._warm and not os.path.exists(spill)
    with pytest.raises(duckdb.ConnectionException):
        database.con.execute("SELECT 1")


def test_concurrent_queries_on_one_warm_database(parquet: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rel = duckdb.read_parquet(str(parquet))

    def one(i: int) -> list[dict[str, Any]]:
        frame = pa.table({"k": [i]})  # each query registers its own object under the same name
        query = 'SELECT max(k) AS k, count(*) AS n FROM orders, mine WHERE "order" < 10'
        return sql.run_query(query, {"orders": rel, "mine": frame}, memory_limit="1004MB").rows.to_pylist()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert results == [[{"k": i, "n": 10}] for i in range(40)]
    [database] = [d for k, d in sql_duckdb._warm.items() if k[0] == "1004MB"]
    assert database.users == 0 and not sql_duckdb._leased
