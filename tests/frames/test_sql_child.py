"""A query's values are built in a forked child under an address-space limit (nbmcp.frames.query.sql_child)."""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from nbmcp.frames.query import sql, sql_child

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sql_child.available(), reason="queries run in a forked child on Linux only"),
]


def peak_rss() -> int:
    """This process's peak resident memory (bytes): the kernel's, which a query must not raise."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))


def forked_children() -> list[int]:
    """This process's children that are copies of it (a fork keeps the command line)."""
    with open("/proc/self/cmdline", "rb") as own:
        cmdline = own.read()
    children = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listed:
            children += [int(pid) for pid in listed.read().split()]
    found = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as theirs:
                if theirs.read() in (cmdline, b""):  # a zombie's command line is empty
                    found.append(pid)
        except FileNotFoundError:
            pass
    return found


@pytest.fixture(scope="module")
def frames() -> dict:
    n = 200_000
    return {
        "big": pd.DataFrame({"v": np.arange(n), "g": np.arange(n) % 7}),
        "lazy": pl.LazyFrame({"v": list(range(1000)), "g": [i % 3 for i in range(1000)]}),
    }


def test_a_vector_of_built_values_is_built_outside_the_kernel(frames: dict) -> None:
    """DuckDB builds 2,048 values of an expression at once: 2,048 x 1 MB here would be 2 GB in the kernel itself
    (2,048 x 60 MB took it to 11.7 GB). The kernel's peak does not move; the answer is right."""
    before = peak_rss()
    result = sql.run_query(
        "SELECT max(length(repeat('x', 1000000) || v)) AS m, count(*) AS n FROM big WHERE v < 4096", frames
    )
    assert result.rows.to_pylist() == [{"m": 1_000_004, "n": 4096}]
    assert peak_rss() - before < 300 * 1024**2


def test_a_query_past_its_memory_fails_with_what_to_do_and_the_kernel_goes_on(frames: dict) -> None:
    """120 GB of values at once: the child reaches its address-space limit; the kernel answers the next query."""
    before = peak_rss()
    with pytest.raises(sql.QueryError) as info:
        sql.run_query("SELECT max(length(repeat('x', 60000000) || i)) AS m FROM range(200) t(i)", frames)
    message = str(info.value)
    assert "memory" in message and "narrow it" in message, message
    assert peak_rss() - before < 300 * 1024**2
    assert sql.run_query("SELECT count(*) AS n FROM big", frames).rows.to_pylist() == [{"n": 200_000}]


def test_the_time_limit_kills_the_child(frames: dict) -> None:
    started = time.monotonic()
    with pytest.raises(sql.QueryTimeout, match="time limit of 1 s"):
        # upper(): a query that may build text runs in the child
        sql.run_query(
            "SELECT count(*) FROM big a, big b, big c WHERE a.v + b.v = c.v AND upper(a.g::VARCHAR) = '1'",
            frames,
            timeout=1,
        )
    assert time.monotonic() - started < 10
    assert forked_children() == []  # killed and reaped: no copy of this process is left behind, not even a zombie


def test_a_lazy_frame_streams_into_the_child_and_a_self_join_reads_it_twice(frames: dict) -> None:
    """polars runs on a thread pool a forked child has not: the kernel streams the frame in instead."""
    result = sql.run_query(
        "SELECT a.g, count(*) AS n FROM lazy a JOIN lazy b ON a.v = b.v GROUP BY a.g ORDER BY a.g", frames
    )
    assert result.rows.to_pylist() == [{"g": 0, "n": 334}, {"g": 1, "n": 333}, {"g": 2, "n": 333}]


def test_queries_at_once_each_answer_while_the_kernel_runs_duckdb_and_polars(frames: dict) -> None:
    """A fork while other threads of the kernel hold locks of DuckDB, polars or Arrow must not hang the child:
    the user's own DuckDB and polars work runs on while twenty queries run four at a time."""
    stop = threading.Event()

    def users_work() -> None:
        con = duckdb.connect()
        while not stop.is_set():
            con.sql("SELECT sum(i * i) FROM range(2000000) t(i)").fetchall()
            pl.DataFrame({"a": np.arange(100_000)}).group_by(pl.col("a") % 10).len()

    worker = threading.Thread(target=users_work, daemon=True)
    worker.start()
    try:
        query = "SELECT g, sum(v) AS s, max(length(v::VARCHAR)) AS digits FROM big GROUP BY g ORDER BY g"
        expected = frames["big"].groupby("g")["v"].sum().tolist()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: sql.run_query(query, frames, timeout=30), range(20)))
    finally:
        stop.set()
        worker.join(30)
    assert all([r["s"] for r in a.rows.to_pylist()] == expected for a in answers)


def test_where_there_is_no_fork_the_query_runs_in_the_kernel(frames: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_child, "available", lambda: False)
    result = sql.run_query("SELECT count(*) AS n FROM big WHERE g = 0", frames)
    assert result.rows.to_pylist() == [{"n": 28_572}]
    with pytest.raises(sql.QueryTimeout):
        sql.run_query("SELECT count(*) FROM big a, big b, big c WHERE a.v + b.v = c.v", frames, timeout=1)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1.8 GiB", int(1.8 * 1024**3)), ("2000MB", 2 * 10**9), ("512.0 KiB", 512 * 1024), ("7 bytes", 7)],
)
def test_duckdbs_sizes_are_read(text: str, size: int) -> None:
    assert sql_child.parse_size(text) == size


def test_each_child_spills_in_a_directory_of_its_own_removed_when_it_ends(frames: dict) -> None:
    """Two children of one warm database must not share DuckDB's spill files; a child killed at its time limit
    leaves none behind."""
    spill_roots = f"{tempfile.gettempdir()}/nbmcp-query-spill-{os.getpid()}-*"
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            seen.update(glob.glob(f"{spill_roots}/*"))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(sql.QueryError):  # out of its memory and spill, or out of time: either way it ends
            sql.run_query(
                "SELECT count(*) FROM (SELECT DISTINCT (a.v * 1000000 + b.v)::VARCHAR FROM big a, big b)",
                frames,
                timeout=4,
                memory_limit="64MB",
                max_spill_bytes=64 * 1024**2,
            )
    finally:
        stop.set()
        watcher.join()
    assert seen, "the query spilled nowhere nbmcp made"
    assert all(os.path.basename(path).isdigit() for path in seen)  # a directory per child, named by its pid
    assert glob.glob(f"{spill_roots}/*") == []


@pytest.mark.parametrize(
    ("query", "in_child"),
    [
        ("SELECT g, sum(v) AS s, count(*), avg(v::DOUBLE) FROM big WHERE v > 3 AND g IN (1, 2) GROUP BY g", False),
        ("SELECT date_trunc('day', t), max(v) FILTER (WHERE v BETWEEN 1 AND 9) FROM big GROUP BY ALL", False),
        ("SELECT row_number() OVER (PARTITION BY g ORDER BY v) FROM big WHERE s LIKE 'x%' AND s IS NOT NULL", False),
        ("SELECT * FROM big WHERE v > (SELECT avg(v) FROM big)", False),
        ("SELECT repeat('x', 10) FROM big", True),
        ("SELECT upper(s) FROM big", True),
        ("SELECT v::VARCHAR FROM big", True),
        ("SELECT v::INTEGER[] FROM big", True),
        ("SELECT CASE WHEN v > 1 THEN s ELSE 'y' END FROM big", True),
        ("SELECT coalesce(s, 'y') FROM big", True),
        ("SELECT [v, v] FROM big", True),
        ("SELECT count(*) FROM range(10)", True),
        ("SELECT list_transform([1], lambda x: x + 1)", True),
    ],
)
def test_a_query_that_builds_only_numbers_runs_in_the_kernel_and_any_other_in_the_child(
    query: str, in_child: bool
) -> None:
    """Arithmetic, comparisons, aggregates and dates cannot build a value larger than a number: those queries run
    in the kernel at engine speed; anything that may build text or lists (a function, a cast, a CASE) forks."""
    [(serialized,)] = duckdb.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    assert sql_child.builds_values(json.loads(serialized)) is in_child


def test_both_paths_answer_alike(frames: dict) -> None:
    kernel = sql.run_query("SELECT g, sum(v) AS s FROM big GROUP BY g ORDER BY g", frames)
    child = sql.run_query("SELECT g, sum(v) AS s, max(upper('x')) AS x FROM big GROUP BY g ORDER BY g", frames)
    assert kernel.rows.to_pylist() == [{"g": r["g"], "s": r["s"]} for r in child.rows.to_pylist()]
