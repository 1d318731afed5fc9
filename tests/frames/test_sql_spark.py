"""``query`` over Spark frames on a real local SparkSession: Spark SQL is checked by Spark's own parser and
analyser and runs in a session of its own with file SQL off; DuckDB's parser never decides what Spark runs.

The differential tests generate queries from quotes, backslashes, ``E'…'``, dollar quotes, nested comments,
unicode escapes and backticks around a payload that reads a file or an environment variable: each is refused
or runs without the secret ever reaching the result or the message. CI runs a few derandomized examples;
``stress/differential.py`` runs many (``NBMCP_DIFFERENTIAL_EXAMPLES``, ``NBMCP_DIFFERENTIAL_RANDOM=1``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nbmcp.frames.query import spark_bounds, spark_sql, sql

pytestmark = [pytest.mark.spark, pytest.mark.timeout(600)]

# Set at import, before the session's JVM starts (fixtures run after collection), so the JVM has it too.
SECRET_ENV = "NBMCP_TEST_SPARK_SECRET"
SECRET = os.environ.setdefault(SECRET_ENV, f"envsecret{uuid.uuid4().hex[:16]}")
MARKER = f"filemarker{uuid.uuid4().hex[:16]}"
PASSWD = "root:x:0:0"  # the first line of /etc/passwd
ATTACK = "SELECT '\\' AS x, ' AS y UNION ALL SELECT value FROM text.`{path}` --' AS z FROM events"
EXAMPLES = int(os.environ.get("NBMCP_DIFFERENTIAL_EXAMPLES", "60"))
DIFFERENTIAL = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("NBMCP_DIFFERENTIAL_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def marker_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(f"{MARKER}\n{MARKER},{MARKER}\n")
    return path


@pytest.fixture(scope="module")
def events(spark: Any) -> Any:
    assert spark._jvm.System.getenv(SECRET_ENV) == SECRET, "the JVM must see the secret, or the test proves nothing"
    return spark.createDataFrame([("Oslo", 1), ("Lima", 2), ("Oslo", 3)], ["city", "n"])


def leaks(text: str) -> bool:
    return MARKER in text or SECRET in text or PASSWD in text


def outcome(query: str, sources: dict[str, Any]) -> str:
    """What a client sees: the rows, or the message (both must be free of secrets)."""
    try:
        result = sql.run_query(query, sources, timeout=60)
    except sql.QueryError as exc:
        return f"error: {exc}"
    return json.dumps(result.rows.to_pylist(), default=str)


def test_the_issues_attack_is_refused(events: Any, marker_file: Path) -> None:
    """DuckDB reads ``'\\'`` as a whole string, Spark as an escaped quote: with DuckDB's check the query read
    /etc/passwd. Spark's parser sees no frame in it (``events`` is inside its comment), DuckDB's sees one."""
    for path in ("/etc/passwd", marker_file):
        with pytest.raises(sql.QueryRefused) as info:
            sql.run_query(ATTACK.format(path=path), {"events": events})
        message = str(info.value)
        assert "Spark's own parser reads this text differently" in message and "events" in message
        assert not leaks(message)
    env = 'SELECT \'\\\' AS x, \' AS y UNION ALL SELECT reflect("java.lang.System","getenv","{}") --\' AS z FROM events'
    assert not leaks(outcome(env.format(SECRET_ENV), {"events": events}))
    with pytest.raises(sql.QueryRefused):
        sql.run_query(env.format(SECRET_ENV), {"events": events})


REFUSED = {
    "reflect": ("SELECT reflect('java.lang.System', 'getenv', '{env}') AS v FROM events", "reflect()"),
    "java_method": ("SELECT java_method('java.lang.System', 'getenv', '{env}') FROM events", "java_method()"),
    "try_reflect": ("SELECT try_reflect('java.lang.System', 'getenv', '{env}') FROM events", "try_reflect()"),
    "quoted name": ("SELECT `REFLECT`('java.lang.System', 'getenv', '{env}') FROM events", "REFLECT()"),
    "qualified name": ("SELECT builtin.reflect('java.lang.System', 'getenv', '{env}') FROM events", "builtin.reflect"),
    "in a subquery": (
        "SELECT * FROM events WHERE city IN (SELECT reflect('java.lang.System', 'getenv', '{env}'))",
        "reflect()",
    ),
    "in a lambda": (
        "SELECT transform(array(1), x -> java_method('java.lang.System', 'getenv', '{env}')) FROM events",
        "java_method()",
    ),
    "in a window": (
        "SELECT sum(n) OVER w FROM events WINDOW w AS (PARTITION BY reflect('java.lang.System', 'getenv', '{env}'))",
        "reflect()",
    ),
    "in VALUES": ("SELECT * FROM events, VALUES (reflect('java.lang.System', 'getenv', '{env}')) AS t(v)", "reflect()"),
    "transform using": ("SELECT TRANSFORM(city) USING 'cat /etc/passwd' AS (x) FROM events", "TRANSFORM ... USING"),
    "text file": ("SELECT * FROM events UNION ALL SELECT value, 1 FROM text.`{marker}`", "text.{marker}"),
    "parquet file": ("SELECT * FROM events JOIN parquet.`/tmp/x` ON true", "parquet./tmp/x"),
    "read_files": ("SELECT * FROM events, read_files('{marker}')", "table function read_files()"),
    "input_file_name": ("SELECT input_file_name() FROM events", "input_file_name()"),
    "options": ("SELECT * FROM events WITH ('path' = '{marker}')", "with options"),
    "identifier": ("SELECT * FROM events, IDENTIFIER('text.`{marker}`')", "text.{marker}"),  # parsed eagerly
    "global temp": ("SELECT * FROM events, global_temp.anything", "global_temp.anything"),
    "insert": ("INSERT INTO events SELECT * FROM events", "INSERT"),
    "hint": ("SELECT /*+ REPARTITION(1000) */ * FROM events", "REPARTITION"),
    "user-defined function": ("SELECT leak() FROM events", "leak()"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_jvm_files_programs_and_udfs_are_refused(spark: Any, events: Any, marker_file: Path, case: str) -> None:
    spark.udf.register("leak", lambda: SECRET)  # the user's own UDF: not a built-in
    query, expected = (part.format(env=SECRET_ENV, marker=marker_file) for part in REFUSED[case])
    with pytest.raises(sql.QueryRefused) as info:
        sql.run_query(query, {"events": events, "sales": pd.DataFrame({"x": [1]})})
    message = str(info.value)
    assert expected in message, message
    assert "allowed: one SELECT" in message and "exposed Spark frames (events)" in message  # what would work
    assert not leaks(message)


def test_spark_sql_still_reads_the_frames(spark: Any, events: Any) -> None:
    cities = spark.createDataFrame([("Oslo", "NO"), ("Lima", "PE")], ["city", "country"])
    sources = {"events": events, "cities": cities}
    cases = {
        "WITH big AS (SELECT * FROM events WHERE n > 1), c AS (SELECT * FROM big) "
        "SELECT c.city, country, sum(n) AS total FROM c JOIN cities USING (city) GROUP BY ALL ORDER BY 1": [
            {"city": "Lima", "country": "PE", "total": 2},
            {"city": "Oslo", "country": "NO", "total": 3},
        ],
        "SELECT city FROM cities WHERE city IN (SELECT city FROM events WHERE n = (SELECT max(n) FROM events))": [
            {"city": "Oslo"}
        ],
        "SELECT city, n, row_number() OVER (PARTITION BY city ORDER BY n) AS r FROM events ORDER BY city, n": [
            {"city": "Lima", "n": 2, "r": 1},
            {"city": "Oslo", "n": 1, "r": 1},
            {"city": "Oslo", "n": 3, "r": 2},
        ],
        "SELECT explode(transform(array(n, 2), x -> x * 10)) AS v FROM events WHERE n = 1": [{"v": 10}, {"v": 20}],
        "SELECT upper(city) AS c, count(*) AS k FROM EVENTS e WHERE e.city LIKE 'O%' GROUP BY 1": [
            {"c": "OSLO", "k": 2}
        ],
        "SELECT t.*, e.n FROM VALUES (1, 'a') AS t(x, y) JOIN events e ON e.n = t.x": [{"x": 1, "y": "a", "n": 1}],
        "SELECT '\\'' AS q, 'it''s' AS r FROM events LIMIT 1": [{"q": "'", "r": "it's"}],
        "SELECT id FROM range(2) JOIN events ON id = n": [{"id": 1}],
    }
    for query, rows in cases.items():
        result = sql.run_query(query, sources, timeout=120)
        assert result.engine == "spark" and result.rows.to_pylist() == rows, query
    assert sql.run_query("SELECT * FROM events", sources).tables == ["events"]


def test_tables_and_views_of_the_users_session_are_not_reachable(spark: Any, events: Any, tmp_path: Path) -> None:
    spark.createDataFrame([("hidden",)], ["s"]).createOrReplaceTempView("user_view")
    spark.sql(f"CREATE TABLE nbmcp_secret_table USING parquet LOCATION '{tmp_path / 't'}' AS SELECT '{MARKER}' AS s")
    try:
        for query in [
            "SELECT * FROM user_view",
            "SELECT * FROM events JOIN nbmcp_secret_table ON true",
            "SELECT * FROM spark_catalog.default.nbmcp_secret_table",
            "WITH a AS (SELECT * FROM nbmcp_secret_table), nbmcp_secret_table AS (SELECT 1) SELECT * FROM a, events",
            "SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t), events, nbmcp_secret_table",
            "WITH nbmcp_secret_table AS (SELECT * FROM nbmcp_secret_table) SELECT * FROM nbmcp_secret_table, events",
        ]:
            with pytest.raises(sql.QueryRefused) as info:
                sql.run_query(query, {"events": events})
            assert any(w in str(info.value) for w in ("not an exposed", "catalog tables", "other databases")), query
        # A CTE in scope is not a table, and may share a catalog table's name.
        shadow = "WITH nbmcp_secret_table AS (SELECT count(*) AS n FROM events) SELECT n FROM nbmcp_secret_table"
        assert sql.run_query(shadow, {"events": events}).rows.to_pylist() == [{"n": 3}]
        # Defence in depth: were the parsed-plan check to let a catalog table through, the analysed plan stops it.
        planned = spark_sql.plan("SELECT * FROM nbmcp_secret_table", events, 60)
        assert spark_sql.refusal(planned, {"events": events}) is not None
        with pytest.raises(spark_sql.SparkRefused, match="not an exposed Spark frame"):
            spark_sql.run(planned, {}, 10, 60, spark_bounds.SparkBounds(8000, 1 << 20))
    finally:
        spark.sql("DROP TABLE IF EXISTS nbmcp_secret_table")
        spark.catalog.dropTempView("user_view")


def test_the_users_catalog_gains_nothing(spark: Any, events: Any) -> None:
    """Views live in a new session of their own; the user's session sees none, after success, error, refusal or
    time limit, and its own settings are untouched."""

    def catalog() -> list[Any]:
        return [*spark.catalog.listTables(), *spark.catalog.listTables("global_temp")]

    before = catalog()
    files_sql = spark.conf.get("spark.sql.runSQLOnFiles")
    assert sql.run_query("SELECT count(*) AS n FROM events", {"events": events}).rows.to_pylist() == [{"n": 3}]
    with pytest.raises(sql.QueryError, match="Spark"):
        sql.run_query("SELECT no_such_column FROM events", {"events": events})
    with pytest.raises(sql.QueryRefused):
        sql.run_query("SELECT reflect('a', 'b') FROM events", {"events": events})
    big = spark.range(0, 10**10)
    with pytest.raises(sql.QueryTimeout, match="time limit of 2 s"):
        sql.run_query("SELECT count(*) FROM big a JOIN big b ON a.id % 7 = b.id % 7", {"big": big}, timeout=2)
    assert catalog() == before
    assert spark.conf.get("spark.sql.runSQLOnFiles") == files_sql


def test_long_values_are_cut_inside_spark_and_the_answer_says_so(events: Any) -> None:
    """Spark's toArrow brought a result whole into the kernel; values are now cut inside Spark (DuckDB's policy)."""
    sources = {"events": events}
    result = sql.run_query("SELECT city, repeat('x', 5000000) AS s, n FROM events ORDER BY n", sources, timeout=120)
    assert [row["s"] for row in result.rows.to_pylist()] == ["x" * 2000] * 3
    assert result.rows.column_names == ["city", "s", "n"] and result.rows.column("n").to_pylist() == [1, 2, 3]
    assert result.cut == [
        {
            "column": "s",
            "rows": [0, 1, 2],
            "sizes": [5_000_000] * 3,
            "unit": "bytes",
            "shown": "its first 2,000 characters",
        }
    ]
    assert "3 value(s) of s shown cut to its first 2,000 characters" in result.notes[0]
    nested = sql.run_query(
        "SELECT sequence(1, 1000) AS r, array('a', 'bb', repeat('é', 10000)) AS names, map('k', repeat('v', 9000)) "
        "AS m, named_struct('x', repeat('z', 9000), 'y', 1) AS st, cast(repeat('ab', 9000) AS binary) AS b, "
        "array(1, 2) AS small, map(1, 2) AS fm FROM events LIMIT 1",
        sources,
        timeout=120,
    )
    [row] = nested.rows.to_pylist()
    assert row["r"] == list(range(1, 126)) and row["small"] == [1, 2] and row["fm"] == [(1, 2)]
    assert row["names"] == ["a", "bb", "é" * 125] and row["m"] == [{"key": "k", "value": "v" * 125}]
    assert row["st"] == {"x": "z" * 1000, "y": 1} and row["b"] == b"ab" * 4000
    assert {entry["column"]: entry["sizes"] for entry in nested.cut} == {
        "r": [1000], "names": [3], "m": [1], "st": [-1], "b": [18_000]
    }  # fmt: skip


def test_a_spark_result_over_its_byte_bound_is_refused_or_saved_short(events: Any) -> None:
    sources = {"events": events}
    with pytest.raises(sql.QueryRefused, match=r"rows take more than 2\.0 KiB even with long values cut"):
        sql.run_query("SELECT n, repeat('x', 1000) AS pad FROM events", sources, max_result_bytes=2000, timeout=120)
    query = "SELECT n, repeat('x', 100000) AS pad FROM events ORDER BY n"
    saved = sql.run_query(query, sources, save=True, limit=1, save_max_bytes=150_000, timeout=120)
    assert saved.saved.num_rows == 2 and saved.saved_over_bytes and saved.saved_truncated and saved.more
    assert saved.saved.column("pad")[0].as_py() == "x" * 65_536 and saved.rows.num_rows == 1
    assert saved.cut == [
        {"column": "pad", "rows": [0], "sizes": [100_000], "unit": "bytes", "shown": "its first 65,536 characters"}
    ]


def test_spark_amplifiers_with_constant_counts_are_refused_before_spark_optimizes(events: Any) -> None:
    """Spark folds repeat('x', 2000000000) in its optimizer, on the driver, where the time limit cannot stop it: a
    512 MB driver ran out of heap ("serve-Arrow" OutOfMemoryError) and the query never answered."""
    sources = {"events": events}
    for query, message in [
        ("SELECT repeat('x', 2000000000) AS s FROM events LIMIT 1", "repeat() would build a value of more than 64.0"),
        ("SELECT city FROM events WHERE length(lpad(city, 1000 * 1000 * 1000, 'y')) > 0", "lpad() would build"),
        ("SELECT (SELECT max(size(array_repeat(n, 2000000000))) FROM events) AS m", "array_repeat() would build"),
        ("SELECT size(sequence(1, 500000000)) AS s FROM events", "sequence() would build a value of more than 4,194"),
        ("SELECT space(2000000000) AS s FROM events", "space() would build"),
        ("SELECT repeat('x', length(repeat('y', 2000000000))) AS s FROM events", "repeat() would build"),
    ]:
        with pytest.raises(sql.QueryRefused, match=re.escape(message)):
            sql.run_query(query, sources, timeout=120)
    small = "SELECT repeat('ab', 2) AS r, lpad('x', 3, '.') AS l, size(sequence(1, 10)) AS q FROM events LIMIT 1"
    assert sql.run_query(small, sources, timeout=120).rows.to_pylist() == [{"r": "abab", "l": "..x", "q": 10}]


def test_without_duckdb_spark_answers_alone(events: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "duckdb" else real(name, *a))
    assert sql.run_query("SELECT 40 + 2 AS x", {"events": events}).rows.to_pylist() == [{"x": 42}]
    with pytest.raises(sql.QueryError, match=r"sql \(Spark\): \[PARSE_SYNTAX_ERROR\]"):
        sql.run_query("SELEC 1", {"events": events})


# ------------------------------------------------------------------------------ differential

PIECES = [
    "'", '"', "\\", "\\'", "''", "\\\\", "E'", "e'x'", "$$", "$q$", "/*", "*/", "/* /* */ */", "--", "\n", "#",
    "U&'\\0041'", "U&", "`", "``", ";", " ", ",", "(", ")", "x", "AS", "r'", "X'", "{", "}", "\\n", "\t",
]  # fmt: skip
TEMPLATES = [
    "SELECT '{a}' AS x, '{b}{p}{c}' AS z FROM {t}",
    "SELECT '{a}' AS x, ' AS y {b}{p}{c}' AS z FROM {t}",
    "SELECT {a} AS x, {b}{p}{c} AS z FROM {t}",
    "SELECT {a}{p}{b} FROM {t}",
    "SELECT * FROM {t} WHERE city = '{a}'{b}{p}{c}",
    "SELECT * FROM {t}{a}{p}{b}",
    "WITH w AS (SELECT '{a}' AS x FROM {t}) SELECT {b}{p}{c} FROM w",
]
SPARK_PAYLOADS = [
    " UNION ALL SELECT value FROM text.`{marker}` ",
    " UNION ALL SELECT value FROM text.`/etc/passwd` ",
    " UNION ALL SELECT * FROM csv.`{marker}` ",
    f" UNION ALL SELECT reflect('java.lang.System', 'getenv', '{SECRET_ENV}') ",
    f' UNION ALL SELECT java_method("java.lang.System", "getenv", "{SECRET_ENV}") ',
    f', reflect("java.lang.System", "getenv", "{SECRET_ENV}") AS leak ',
    " UNION ALL SELECT * FROM read_files('{marker}') ",
]
DUCKDB_PAYLOADS = [
    " UNION ALL SELECT content FROM read_text('{marker}') ",
    " UNION ALL SELECT * FROM read_csv('{marker}') ",
    " UNION ALL SELECT * FROM '{marker}' ",
    f" UNION ALL SELECT getenv('{SECRET_ENV}') ",
    f", getenv('{SECRET_ENV}') AS leak ",
    " UNION ALL SELECT * FROM read_text('/etc/passwd') ",
]
# Quoted or commented pieces are balanced for one parser and maybe not for the other: where the two disagree.
WRAPS = ["'{}'", '"{}"', "`{}`", "E'{}'", "$${}$$", "/*{}*/", "U&'{}'", "r'{}'", "--{}\n", "{}"]
piece = st.one_of(st.sampled_from(PIECES), st.lists(st.sampled_from(PIECES), max_size=4).map("".join))
wrapped = st.builds(lambda wrap, inner: wrap.format(inner), st.sampled_from(WRAPS), piece)
glue = st.one_of(st.just(""), wrapped, wrapped, piece)  # mostly forms that parse, so that queries get to run


def generated(template: int, a: str, b: str, c: str, payload: str, table: str, marker_file: Path) -> str:
    return TEMPLATES[template].format(a=a, b=b, c=c, p=payload.format(marker=marker_file), t=table)


@given(
    template=st.integers(0, len(TEMPLATES) - 1),
    a=glue,
    b=glue,
    c=glue,
    payload=st.sampled_from(SPARK_PAYLOADS),
    table=st.sampled_from(["events", "sales", "events e"]),
)
@example(template=1, a="\\", b="", c="--", payload=SPARK_PAYLOADS[0], table="events")  # the issue's query
@example(template=1, a="\\", b="", c="--", payload=SPARK_PAYLOADS[3], table="events")  # ... reading the env
@example(template=0, a="\\", b="", c="--", payload=SPARK_PAYLOADS[1], table="events e")
@DIFFERENTIAL
def test_differential_spark(
    events: Any, marker_file: Path, template: int, a: str, b: str, c: str, payload: str, table: str
) -> None:
    """Spark frames next to a pandas one: whichever engine takes a generated query, no secret comes back."""
    query = generated(template, a, b, c, payload, table, marker_file)
    seen = outcome(query, {"events": events, "sales": pd.DataFrame({"city": ["Oslo"], "n": [1]})})
    assert not leaks(seen), (query, seen)


@given(
    template=st.integers(0, len(TEMPLATES) - 1),
    a=glue,
    b=glue,
    c=glue,
    payload=st.sampled_from(DUCKDB_PAYLOADS),
    table=st.sampled_from(["sales", "sales s"]),
)
@example(template=1, a="\\", b="", c="--", payload=DUCKDB_PAYLOADS[0], table="sales")
@example(template=3, a="", b="", c="", payload=DUCKDB_PAYLOADS[4], table="sales")
@DIFFERENTIAL
def test_differential_duckdb(
    marker_file: Path, template: int, a: str, b: str, c: str, payload: str, table: str
) -> None:
    """DuckDB's own parser decides what DuckDB runs: file functions and getenv stay out whatever the quoting."""
    query = generated(template, a, b, c, payload, table, marker_file)
    seen = outcome(query, {"sales": pd.DataFrame({"city": ["Oslo"], "n": [1]})})
    assert not leaks(seen), (query, seen)
