"""The one table of backends (:mod:`nbmcp.frames.kinds`): every backend is known to the adapters, the SQL engine,
the fingerprint and the probe, from that table alone, so a backend added without one of them fails here."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from nbmcp import frames
from nbmcp.frames import digest, kinds
from nbmcp.frames.backends import EAGER_ADAPTER
from nbmcp.frames.query import sql, sql_duckdb
from nbmcp.frames.sources import Source
from nbmcp.serve.kernel_tools.query import ENGINE_MODULES
from nbmcp.serve.languages import probe
from tests.frames.test_sources import BACKENDS as MAKERS
from tests.frames.test_sources import KINDS

SQL_ACCESS = {"scan", "relation", "arrow", "spark", "once"}
# How query reached each backend before the table existed (sql.py's own list): unchanged.
EXPECTED_SQL = {
    "pandas.DataFrame": "scan",
    "polars.DataFrame": "scan",
    "pyarrow.Table": "scan",
    "polars.LazyFrame": "scan",
    "pyarrow.dataset.Dataset": "scan",
    "pyarrow.RecordBatchReader": "once",
    "duckdb.DuckDBPyRelation": "relation",
    "ibis.Table": "arrow",
    "dask.dataframe.DataFrame": "arrow",
    "pyspark.sql.DataFrame": "spark",
}


@pytest.mark.parametrize("backend", kinds.BACKENDS, ids=lambda b: f"{b.module}.{b.cls}")
def test_every_backend_has_an_adapter_an_sql_access_a_fingerprint_rule_and_a_probe_rule(backend: Any) -> None:
    module, name = backend.adapter.rsplit(".", 1)
    adapter = getattr(importlib.import_module(f"nbmcp.frames.adapters.{module}"), name)
    assert issubclass(adapter, Source) and not getattr(adapter, "__abstractmethods__", None)
    assert backend.sql in SQL_ACCESS and EXPECTED_SQL[backend.kind] == backend.sql
    eager = backend.adapter == EAGER_ADAPTER
    # An eager frame is fingerprinted after cells and paged by the probe without nbmcp; a lazy one is neither.
    assert (backend.kind in digest.HASHERS) is eager
    assert (backend.kind in probe.PLAIN_PAGES) is eager


def test_the_table_and_the_rules_that_read_it_agree() -> None:
    eager = {b.kind for b in kinds.BACKENDS if b.adapter == EAGER_ADAPTER}
    assert set(digest.HASHERS) == eager == set(probe.PLAIN_PAGES)
    assert set(EXPECTED_SQL) == {b.kind for b in kinds.BACKENDS}
    assert ENGINE_MODULES["kinds"] is kinds  # the kernel's copy of the engine reads the same table


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("kinds") / "t.parquet"
    pq.write_table(pa.table({"id": list(range(10)), "city": ["Oslo", "Lima"] * 5}), path)
    return path


@pytest.mark.parametrize("name", [*MAKERS, "arrow-reader"])
def test_real_objects_are_found_in_the_table_by_every_reader(name: str, parquet: Path) -> None:
    obj = pa.table({"id": [1]}).to_reader() if name == "arrow-reader" else MAKERS[name](parquet)
    kind = "pyarrow.RecordBatchReader" if name == "arrow-reader" else KINDS[name]
    backend = kinds.backend_of(obj)
    assert backend is not None and backend.kind == kind
    assert (
        frames.source_for(obj).kind == kind and type(frames.source_for(obj)).__name__ == backend.adapter.split(".")[1]
    )
    assert sql.source_kind(obj) == EXPECTED_SQL[kind] and sql.is_queryable(obj)
    assert frames.is_frame(obj) is (backend.adapter == EAGER_ADAPTER)


@pytest.mark.spark
@pytest.mark.timeout(180)
def test_spark_frames_are_found_in_the_table(spark: Any) -> None:
    frame = spark.range(0, 3)
    assert kinds.backend_of(frame).kind == "pyspark.sql.DataFrame" == frames.source_for(frame).kind
    assert sql.source_kind(frame) == "spark"


@pytest.mark.parametrize("obj", [None, 1, "x", [1, 2], {"a": [1]}, pa.array([1]), object()])
def test_what_is_not_a_table(obj: Any) -> None:
    assert kinds.backend_of(obj) is None and not sql.is_queryable(obj) and not frames.is_source(obj)


def test_sql_duckdb_reads_the_sql_access_of_the_table() -> None:
    """sql_duckdb registers "scan" sources in place and refuses "once" ones: the words of the table."""
    source = Path(sql_duckdb.__file__).read_text(encoding="utf-8")
    assert 'source_kind(value) == "once"' in source and 'source_kind(value) == "scan"' in source


def test_without_nbmcp_the_table_still_tells_tables_apart() -> None:
    """In a Python where nbmcp cannot be imported, the table sent to the kernel finds the same backends."""
    program = textwrap.dedent(
        """
        import sys, types
        sys.modules["nbmcp"] = None
        import duckdb, pandas as pd, polars as pl
        kinds = types.ModuleType("_nbmcp_kinds")
        exec(sys.stdin.read(), kinds.__dict__)
        objects = [pd.DataFrame({"a": [1]}), pl.DataFrame({"a": [1]}).lazy(), duckdb.sql("SELECT 1"), 1]
        print([kinds.sql_access(o) for o in objects])
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", program],
        input=Path(kinds.__file__).read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['scan', 'scan', 'relation', None]"
