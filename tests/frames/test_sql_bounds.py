"""Bounds of ``query`` outside DuckDB's memory_limit: value bombs (repeat, range, list, string_agg, nested),
result bytes, save_as bytes, spill disk, and integers JSON numbers cannot hold. Real DuckDB and pyarrow; the
memory bombs also run in a subprocess whose peak RSS is read from /proc (and capped by RLIMIT_AS, so that the
unbounded code fails there instead of taking the machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nbmcp.frames import page
from nbmcp.frames.query import sql

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


def run_json(query: str, limit: int = 50, **options) -> dict:
    """``run_json`` over this process's ``__main__`` namespace, as ``nbmcp serve`` runs it in a kernel."""
    return json.loads(sql.run_json(query, limit, 20.0, **options))


def in_subprocess(queries: list[str], setup: str = "", options: str = "") -> list[dict]:
    """Each query through ``run_json`` in a fresh process capped at 4 GB of address space: its answer's size,
    its start and the process's peak RSS (VmHWM) after it."""
    code = textwrap.dedent(
        f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from nbmcp.frames.query import sql
        {setup}
        def peak():
            return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
        out = []
        for query in {queries!r}:
            try:
                answer = sql.run_json(query, 50, 20.0{options})
            except BaseException as exc:
                answer = json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}})
            out.append({{"bytes": len(answer), "answer": json.loads(answer), "peak_mb": peak()}})
        print(json.dumps(out, default=lambda v: v[:300] if isinstance(v, str) else str(v)))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_value_bombs_stay_small_in_memory_and_in_the_answer() -> None:
    """The issue's 40-byte query took the kernel to 9.8 GB; each shape here stays under 1 GB of peak RSS."""
    results = in_subprocess(
        [
            "SELECT repeat('x', 2000000000) AS s",  # refused before DuckDB builds it (3.9 GB inside DuckDB alone)
            "SELECT range(0, 2000000000) AS r",  # 200M elements took 13.9 GB inside DuckDB
            "SELECT repeat('x', 60000000) AS s",  # allowed, and cut inside the engine
            "SELECT [repeat('x', 30000000), repeat('y', 30000000)] AS l",  # repeat inside a list
            "SELECT {'a': repeat('x', 30000000), 'b': 1} AS st",  # a struct of a huge string
            "SELECT list(i) AS l FROM range(3000000) t(i)",  # a list aggregate inside the memory limit
            "SELECT string_agg(repeat('x', 1000), ',') AS s FROM range(50000)",  # a 50 MB aggregate string
        ]
    )
    refused_repeat, refused_range, *cut = results
    assert "repeat() would build a value of more than 64.0 MiB" in refused_repeat["answer"]["error"]
    assert "range() would build a value of more than 4,194,304 elements" in refused_range["answer"]["error"]
    for result in cut:
        answer = result["answer"]
        assert "error" not in answer, answer
        assert result["bytes"] < 20_000 and answer["cut"], result
        assert any("read a part with" in note for note in answer["notes"]), answer["notes"]
    assert max(r["peak_mb"] for r in results) < 1000, [r["peak_mb"] for r in results]


AMPLIFIERS = {  # a value much larger than its arguments: refused by a guard, or within DuckDB's memory limit
    "SELECT replace(repeat('x', 1000000), 'x', repeat('y', 10000)) AS s": "replace() would build",
    "SELECT regexp_replace(repeat('x', 1000000), 'x', repeat('y', 10000), 'g') AS s": "regexp_replace() would build",
    "SELECT printf('%2000000000d', 1) AS s": "printf() would build",
    "SELECT format('{:>2000000000}', 1) AS s": "format() would build",
    "WITH a AS (SELECT repeat('x', 60000000) AS s) SELECT s || s || s || s || s || s AS s FROM a": "||() would build",
    "SELECT array_to_string([repeat('x', 40000000), repeat('y', 40000000)], ',') AS s": "array_to_string() would",
    "SELECT concat_ws(repeat('x', 60000000), 'a', 'b', 'c', 'd', 'e') AS s": "concat_ws() would build",
    "WITH a AS (SELECT repeat('x', 60000000) AS s) SELECT concat(s, s, s, s, s, s, s, s, s, s) AS s FROM a": "memory",
    "WITH a AS (SELECT range(4000000) AS l) SELECT list_concat(l, l, l, l, l, l, l, l, l, l, l) AS l FROM a": "memory",
    "SELECT string_agg(repeat('x', 60000000), ',') AS s FROM range(100)": "memory",
    "SELECT list_transform(range(4000000), lambda x: repeat('x', 1000)) AS l": "inside a lambda",
}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_amplifiers_are_refused_or_stay_within_the_memory_limit() -> None:
    """Under a 300 MB memory limit replace() peaked at 2.7 GB, regexp_replace() 2.1 GB, printf/format 3.9 GB and a
    chain of || 2.2 GB (measured, DuckDB 2.0.1): guarded now; repeat() in a lambda is refused. concat(),
    list_concat(), string_agg() and sorts stop at the memory limit. repeat on a list and bar() are bounded by the
    repeat guard and DuckDB."""
    results = in_subprocess(list(AMPLIFIERS), options=", memory_limit='300MB'")
    for (query, expected), result in zip(AMPLIFIERS.items(), results, strict=True):
        expected = "memory limit of 286.1 MiB" if expected == "memory" else expected
        assert expected in result["answer"].get("error", ""), (query, result)
    assert max(r["peak_mb"] for r in results) < 900, [r["peak_mb"] for r in results]
    for query, message in [
        ("SELECT repeat([1, 2, 3, 4, 5, 6, 7, 8], 20000000) AS l", "repeat() would build"),
        ("SELECT bar(1, 0, 1, 2000000000) AS s", "Max bar width must be <= 1000"),
    ]:
        with pytest.raises(sql.QueryError, match=re.escape(message)):
            sql.run_query(query, {})
    small = sql.run_query(
        "SELECT replace('abcabc', 'b', 'XY') AS a, regexp_replace('abab', 'b', 'Z', 'g') AS b, "
        "printf('%5d|%s', 42, 'x') AS c, format('{}-{}', 1, 'a') AS d, array_to_string([1, 2, 3], ',') AS e, "
        "'ab' || 'cd' AS f, [1] || [2] AS g, 'x'::BLOB || 'y'::BLOB AS h, concat_ws(',', 'a', NULL, 'b') AS i",
        {},
    )
    assert small.rows.to_pylist() == [
        {
            "a": "aXYcaXYc",
            "b": "aZaZ",
            "c": "   42|x",
            "d": "1-a",
            "e": "1,2,3",
            "f": "abcd",
            "g": [1, 2],
            "h": b"xy",
            "i": "a,b",
        }
    ]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT current_setting('temp_directory') AS t",
        "SELECT CURRENT_SETTING('allowed_paths') AS p",
        "SELECT [1] AS l WHERE len(list_transform([1], lambda x: current_setting('memory_limit'))) > 0",
        "WITH s AS (SELECT getenv('HOME') AS h) SELECT * FROM s",
        "SELECT getvariable('x') AS v",
    ],
)
def test_functions_revealing_the_kernels_settings_or_environment_are_refused(query: str) -> None:
    """current_setting('temp_directory') named the spill directory, allowed_paths the kernel's working directory."""
    with pytest.raises(sql.QueryRefused, match=r"\(\), which reveals the kernel's settings, paths or environment"):
        sql.run_query(query, {})
    assert sql.run_query("SELECT version() AS v, current_database() AS d", {}).rows.num_rows == 1


def test_long_text_is_cut_in_the_engine_and_the_answer_says_how_to_read_it() -> None:
    result = sql.run_query("SELECT repeat('x', 5000000) AS s, 'short' AS t, 42 AS n", {})
    [row] = result.rows.to_pylist()
    assert row == {"s": "x" * 2000, "t": "short", "n": 42}
    assert result.cut == [
        {"column": "s", "rows": [0], "sizes": [5_000_000], "unit": "bytes", "shown": "its first 2,000 characters"}
    ]
    [note] = result.notes
    assert "of s shown cut to its first 2,000 characters (row 0 (5,000,000 bytes))" in note
    assert "substr(s, start, length)" in note


def test_nested_values_are_cut_element_by_element() -> None:
    result = sql.run_query(
        "SELECT range(0, 1000) AS r, ['a', 'bb', repeat('é', 10000)] AS names, MAP {'k': repeat('v', 9000)} AS m, "
        "{'x': repeat('z', 9000), 'y': 1} AS st, repeat('ab', 9000)::BLOB AS b, [1, 2] AS small",
        {},
    )
    [row] = result.rows.to_pylist()
    assert row["r"] == list(range(125)) and row["small"] == [1, 2]
    assert row["names"][:2] == ["a", "bb"] and row["names"][2] == "é" * 125  # short elements stay whole
    assert row["m"] == [{"key": "k", "value": "v" * 125}]
    assert row["st"] == {"x": "z" * 1000, "y": 1}
    assert row["b"] == b"ab" * 4000
    cut = {entry["column"]: entry for entry in result.cut}
    assert set(cut) == {"r", "names", "m", "st", "b"}
    assert cut["r"]["sizes"] == [1000] and cut["r"]["unit"] == "elements"
    assert cut["b"]["sizes"] == [18_000] and cut["b"]["unit"] == "bytes"


def test_generators_past_their_bound_are_refused_and_small_ones_work() -> None:
    for query, message in [
        ("SELECT lpad('x', 2000000000, 'y')", "lpad() would build"),
        ("SELECT list_resize([1], 2000000000)", "list_resize() would build"),
        ("SELECT len(generate_series(1, 2000000000))", "generate_series() would build"),
        ("SELECT range(TIMESTAMP '2020-01-01', TIMESTAMP '2030-01-01', INTERVAL 1 MINUTE)", "range() would build"),
    ]:
        with pytest.raises(sql.QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
            sql.run_query(query, {})
    small = sql.run_query(
        "SELECT range(3) AS a, range(1, 3) AS b, range(6, 0, -2) AS c, generate_series(1, 2) AS d, "
        "repeat('ab', 2) AS e, lpad('x', 3, '.') AS f, list_resize([1], 2) AS g, "
        "range(DATE '2020-01-01', DATE '2020-01-03', INTERVAL 1 DAY) AS h",
        {},
    )
    row = small.rows.to_pylist()[0]
    assert [row[k] for k in "abcdefg"] == [[0, 1, 2], [1, 2], [6, 4, 2], [1, 2], "abab", "..x", [1, None]]
    assert len(row["h"]) == 2
    with pytest.raises(sql.QueryRefused, match=r"system\.main\.repeat\(\): call functions by their plain names"):
        sql.run_query("SELECT system.main.repeat('x', 2000000000)", {})


def test_sized_functions_inside_a_lambda_are_refused_and_everyday_lambdas_work() -> None:
    """A lambda runs its body once per element: repeat() within the bound for one value, times a list, is not."""
    for query in [
        "SELECT list_transform(range(100), lambda x: repeat('x', 60000000)) AS l",
        "SELECT [lpad('x', 60000000, 'y') for x in range(100)] AS l",
        "SELECT list_transform([1, 2], lambda x: range(4000000)) AS l",
    ]:
        with pytest.raises(sql.QueryRefused, match=r"inside a lambda .* once per element"):
            sql.run_query(query, {})
    everyday = sql.run_query(
        "SELECT list_transform(['a-b', 'c'], lambda t: replace(t, '-', '_') || '!') AS l, [x * 2 for x in [1, 2]] AS d",
        {},
    )
    assert everyday.rows.to_pylist() == [{"l": ["a_b!", "c!"], "d": [2, 4]}]


def test_every_sized_function_is_guarded() -> None:
    import re

    from nbmcp.frames.query import sql_bounds

    guarded = {re.match(r'CREATE MACRO ("[^"]+"|\w+)', m).group(1).strip('"') for m in sql_bounds.guard_macros()}
    assert guarded >= sql_bounds.SIZED_FUNCTIONS


def test_rows_shown_over_the_byte_bound_are_refused_before_python() -> None:
    query = "SELECT i, repeat('x', 1000) AS pad FROM range(1000) t(i)"
    with pytest.raises(sql.QueryRefused, match=r"take more than 97\.7 KiB even with long values cut"):
        sql.run_query(query, {}, limit=1000, max_result_bytes=100_000)
    assert sql.run_query(query, {}, limit=50, max_result_bytes=100_000).rows.num_rows == 50
    refused = run_json(query, 1000, max_result_bytes=100_000)
    assert refused["refused"] and "c.NbMCP.max_resource_bytes" in refused["error"]


def test_save_as_keeps_fewer_rows_past_its_byte_bound_and_says_so() -> None:
    frame = pd.DataFrame({"v": np.arange(1_000_000), "w": np.arange(1_000_000) * 2})
    result = sql.run_query("SELECT * FROM frame", {"frame": frame}, save=True, limit=5, save_max_bytes=2 * MiB)
    saved = result.saved
    assert result.saved_truncated and result.saved_over_bytes and result.more
    assert 0 < saved.num_rows < 1_000_000 and saved.nbytes <= 2 * MiB
    assert saved.column("v").to_pylist()[:3] == [0, 1, 2] and result.rows.num_rows == 5
    whole = sql.run_query("SELECT * FROM frame WHERE v < 1000", {"frame": frame}, save=True, save_max_bytes=2 * MiB)
    assert whole.saved.num_rows == 1000 and not whole.saved_truncated and not whole.saved_over_bytes
    long_values = sql.run_query("SELECT repeat('x', 1000000) AS s", {}, save=True)
    assert long_values.saved.column("s")[0].as_py() == "x" * 65_536
    assert any("of s saved cut to its first 65,536 characters" in note for note in long_values.notes)


BIG_JOIN = "SELECT count(*) FROM (SELECT DISTINCT a.v * 1000000 + b.v FROM big a, big b)"


def spill_directories() -> list[Path]:
    return sorted(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"nbmcp-query-spill-{os.getpid()}-*"))


def test_spilling_is_bounded_in_a_directory_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's join wrote 5-6 GB into <kernel cwd>/.tmp in 30 s: now at most the bound, in nbmcp's directory."""
    monkeypatch.chdir(tmp_path)
    big = {"big": pd.DataFrame({"v": np.arange(100_000)})}
    with pytest.raises(sql.QueryError, match=r"needed more than 40\.0 MiB of disk to spill to, beyond its memory"):
        sql.run_query(BIG_JOIN, big, memory_limit="100MB", max_spill_bytes=40 * MiB, timeout=20)
    assert not (tmp_path / ".tmp").exists() and list(tmp_path.iterdir()) == []
    spilled = [p for d in spill_directories() for p in d.iterdir() if p.suffix == ".tmp" and p.stat().st_size]
    assert spilled == []  # DuckDB removed its blocks; the directory goes with the database (below)
    with pytest.raises(sql.QueryError, match=r"spilling to disk is off \(c\.NbMCP\.query_max_spill_bytes = 0\)"):
        sql.run_query(BIG_JOIN, big, memory_limit="100MB", max_spill_bytes=0, timeout=20)
    assert list(tmp_path.iterdir()) == []


def test_spill_directories_go_with_the_process_and_stale_ones_are_removed(tmp_path: Path) -> None:
    code = "from nbmcp.frames.query import sql; sql.run_query('SELECT 1', {}); import os; print(os.getpid())"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    pid = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=50).stdout
    assert pid.strip().isdigit() and list(tmp_path.glob("nbmcp-query-spill-*")) == []
    stale = tmp_path / "nbmcp-query-spill-999999999-x"  # a kernel killed before it could clean up
    stale.mkdir()
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=50, check=True)
    assert not stale.exists()


def test_integers_are_numbers_below_2_53_and_exact_strings_above() -> None:
    frame = pd.DataFrame({"id": np.arange(5_000_000)})
    result = sql.run_query(
        "SELECT sum(id) AS total, sum(id) * 1000 AS huge, 9007199254740991::BIGINT AS edge, "
        "9007199254740992::BIGINT AS over, -9007199254740993::HUGEINT AS under, 12.50::DECIMAL(5, 2) AS price "
        "FROM frame",
        {"frame": frame},
    )
    [row] = page(result.rows, 0, 1)
    assert row == {
        "total": 12_499_997_500_000,
        "huge": "12499997500000000",
        "edge": 9_007_199_254_740_991,
        "over": "9007199254740992",
        "under": "-9007199254740993",
        "price": "12.50",
    }
    assert result.big_integers == ["huge", "over", "under"]
    assert any("integers beyond ±2**53 in huge, over, under are given as strings" in n for n in result.notes)
    answer = run_json(
        "SELECT 12499997500000::HUGEINT AS total, [1152921504606846976::BIGINT] AS ids"
    )  # a kernel's JSON too
    assert answer["rows"] == [{"total": 12_499_997_500_000, "ids": ["1152921504606846976"]}]
    assert answer["big_integers_as_strings"] == ["ids"]


def test_every_reader_turns_big_integers_into_strings() -> None:
    table = pa.table({"n": pa.array([1, 2**53, -(2**60)], pa.int64()), "u": pa.array([2**64 - 1, 0, 1], pa.uint64())})
    assert page(table, 0, 3) == [
        {"n": 1, "u": "18446744073709551615"},
        {"n": "9007199254740992", "u": 0},
        {"n": "-1152921504606846976", "u": 1},
    ]
    assert page(pd.DataFrame({"n": [2**62]}), 0, 1) == [{"n": "4611686018427387904"}]


def test_records_without_nbmcp_in_the_kernel_follow_the_same_rule() -> None:
    from nbmcp.frames.query import sql_bounds

    table = pa.table({"a": [1, 2**60], "d": pa.array([1, 2], pa.decimal128(38, 0))})
    assert sql_bounds.records(table) == [{"a": 1, "d": 1}, {"a": "1152921504606846976", "d": 2}]
