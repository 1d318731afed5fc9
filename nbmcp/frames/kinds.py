"""Which objects are tables, how SQL reaches each, and where a kernel keeps them: the one table of backends.

Every frame backend nbmcp knows is one row of :data:`BACKENDS`: the class that makes an object a table (found
through ``sys.modules``, so nothing is imported), the kind nbmcp shows, the adapter that pages it
(:mod:`nbmcp.frames.adapters`, picked by :func:`nbmcp.frames.source_for`) and how ``query`` reaches it:

- ``"scan"``: DuckDB scans it in place (pandas, polars eager and lazy, pyarrow Tables and datasets);
- ``"relation"``: a DuckDB relation, re-planned from its own SQL on the query's connection (else streamed as Arrow);
- ``"arrow"``: it streams into DuckDB as Arrow record batches (Ibis tables, Dask frames);
- ``"spark"``: Spark SQL runs the query (PySpark DataFrames, classic and Spark Connect);
- ``"once"``: a one-shot stream, which a query would use up (pyarrow ``RecordBatchReader``): refused.

A new backend is one row here and one adapter module; ``tests/frames/test_kinds.py`` fails until the SQL engine,
the fingerprint and the probe all know it.

This module imports only the standard library: ``nbmcp serve`` sends its source to kernels that may not have
nbmcp, beside the query engine (:mod:`nbmcp.frames.query.sql`) and the inspection probe
(:mod:`nbmcp.serve.languages.probe`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["BACKENDS", "Backend", "backend_of", "namespace_sources", "sql_access", "user_namespace"]


class Backend(NamedTuple):
    kind: str  # what nbmcp calls it (describe_object's "kind", frame_kind)
    module: str  # the module whose class makes an object this backend, looked up in sys.modules only
    cls: str  # that class's name
    adapter: str  # "module.Class" under nbmcp.frames.adapters
    sql: str  # how query reaches it: "scan", "relation", "arrow", "spark" or "once"


# In order, first match wins: the eager frames first (a pyarrow Table is also Arrow data).
BACKENDS: tuple[Backend, ...] = (
    Backend("pandas.DataFrame", "pandas", "DataFrame", "eager.EagerSource", "scan"),
    Backend("polars.DataFrame", "polars", "DataFrame", "eager.EagerSource", "scan"),
    Backend("pyarrow.Table", "pyarrow", "Table", "eager.EagerSource", "scan"),
    Backend("polars.LazyFrame", "polars", "LazyFrame", "polars_lazy.PolarsLazySource", "scan"),
    Backend("pyarrow.RecordBatchReader", "pyarrow", "RecordBatchReader", "arrow_streams.ArrowReaderSource", "once"),
    Backend("pyarrow.dataset.Dataset", "pyarrow.dataset", "Dataset", "arrow_streams.ArrowDatasetSource", "scan"),
    Backend("duckdb.DuckDBPyRelation", "duckdb", "DuckDBPyRelation", "duckdb_relation.DuckDBSource", "relation"),
    Backend("ibis.Table", "ibis.expr.types", "Table", "ibis_table.IbisSource", "arrow"),
    Backend("dask.dataframe.DataFrame", "dask.dataframe", "DataFrame", "dask_frame.DaskSource", "arrow"),
    Backend("pyspark.sql.DataFrame", "pyspark.sql", "DataFrame", "spark_frame.SparkSource", "spark"),
    Backend("pyspark.sql.DataFrame", "pyspark.sql.connect.dataframe", "DataFrame", "spark_frame.SparkSource", "spark"),
)


def backend_of(obj: Any) -> Backend | None:
    """The row of :data:`BACKENDS` that ``obj`` belongs to, or None (not a table). Imports nothing."""
    for backend in BACKENDS:
        cls = getattr(sys.modules.get(backend.module), backend.cls, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            return backend
    return None


def sql_access(obj: Any) -> str | None:
    """How SQL reaches ``obj`` ("scan", "relation", "arrow", "spark", "once"), or None (not a table)."""
    backend = backend_of(obj)
    return backend.sql if backend is not None else None


def user_namespace() -> tuple[dict[str, Any], set[str]]:
    """The kernel user's namespace and the names IPython hides from it (``__main__``'s, outside IPython)."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except Exception:
        ip = None
    if ip is not None:
        return ip.user_ns, set(ip.user_ns_hidden)
    import __main__

    return vars(__main__), set()


def namespace_sources(namespace: Mapping[str, Any], hidden: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The tables of a user namespace: its public variables that SQL can read."""
    return {
        name: value
        for name, value in list(namespace.items())
        if not name.startswith("_") and name not in hidden and sql_access(value) is not None
    }
