"""Read-only SQL over named frames: DuckDB in the kernel, Spark SQL for Spark frames. Safe by construction.

A query is refused before it runs unless DuckDB's own parser says it is exactly one ``SELECT`` (or
``WITH … SELECT``) statement whose tables are all among the given sources and whose table functions are
only generators (``range``, ``generate_series``, ``unnest``). It then runs on a fresh in-memory DuckDB
connection opened with external access off (no files, network or extension installs), extension
autoloading off, Python replacement scans off and the configuration locked, on which exactly the sources
the query names are registered (pandas, polars and pyarrow objects are scanned in place; DuckDB relations,
Ibis tables and Dask frames stream in as Arrow). A timer interrupts it at the time limit; the result is
capped in rows.

This module imports only the standard library at import time: ``nbmcp serve`` sends its source to the
kernel (which may not have nbmcp) and runs it there as the module ``_nbmcp_sql``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALLOWED",
    "QueryError",
    "QueryRefused",
    "QueryResult",
    "QueryTimeout",
    "is_queryable",
    "namespace_sources",
    "run_json",
    "run_query",
]

ALLOWED = (
    "one SELECT (or WITH ... SELECT) statement over the exposed objects, by their names; no files, "
    "table functions other than range/generate_series/unnest, settings, ATTACH, COPY, PRAGMA, SET or INSTALL"
)
DEFAULT_TIMEOUT = 30.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_SAVE_MAX_ROWS = 1_000_000
DEFAULT_MEMORY_LIMIT = "2GB"
# Generators only: every other table function reads something (files, settings, the catalog of extensions).
_SAFE_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
# Spark SQL functions that reach the JVM or the file system.
_SPARK_FORBIDDEN_FUNCTIONS = {"reflect", "java_method", "try_reflect", "input_file_name", "spark_partition_id"}
_LOCKED_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
}


class QueryError(ValueError):
    """A query that failed: DuckDB's (or Spark's) own message."""


class QueryRefused(QueryError):
    """A query refused before it ran: not one SELECT, a file, a name that is not exposed..."""


class QueryTimeout(QueryError):
    """A query interrupted at its time limit."""


@dataclass
class QueryResult:
    """The first rows of a result (a ``pyarrow.Table``) and what is known about the rest."""

    rows: Any  # pyarrow.Table, at most ``limit`` rows
    more: bool  # the result has more rows than were fetched
    engine: str  # "duckdb" or "spark"
    elapsed_s: float
    tables: list[str] = field(default_factory=list)  # the sources the query read
    saved: Any = None  # pyarrow.Table with up to ``save_max_rows`` rows, when asked to save
    saved_truncated: bool = False


# ------------------------------------------------------------------------------ which objects are sources


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _kind(obj: Any) -> str | None:
    """How SQL reaches ``obj``: "scan" (DuckDB scans it in place), "arrow" (streams in), "spark", "once" (a
    one-shot stream, refused), or None (not a table)."""
    module, name = _module(obj), type(obj).__name__
    if module == "pandas" and name == "DataFrame":
        return "scan"
    if module == "polars" and name in ("DataFrame", "LazyFrame"):
        return "scan"
    if module == "pyarrow" and name in ("Table", "Dataset", "FileSystemDataset", "UnionDataset", "InMemoryDataset"):
        return "scan"
    if module == "pyarrow" and name == "RecordBatchReader":
        return "once"
    if module in ("duckdb", "_duckdb") and name == "DuckDBPyRelation":
        return "arrow"
    if module == "ibis" and hasattr(obj, "to_pyarrow_batches"):
        return "arrow"
    if module == "dask" and hasattr(obj, "to_delayed") and hasattr(obj, "npartitions"):
        return "arrow"
    if module == "pyspark" and hasattr(obj, "sparkSession") and hasattr(obj, "createOrReplaceTempView"):
        return "spark"
    return None


def is_queryable(obj: Any) -> bool:
    """Whether ``query`` can read ``obj`` as a table."""
    return _kind(obj) is not None


def namespace_sources(namespace: Mapping[str, Any], hidden: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The tables of a user namespace: its public variables that SQL can read."""
    return {
        name: value
        for name, value in list(namespace.items())
        if not name.startswith("_") and name not in hidden and is_queryable(value)
    }


def _arrow_stream(obj: Any, mentioned: set[str], batch_rows: int = 1_000_000) -> Any:
    """A ``pyarrow.RecordBatchReader`` over an object DuckDB cannot scan itself (memory O(batch)): the
    frame adapter's own Arrow stream (:mod:`nbmcp.frames.sources`); a kernel without nbmcp streams DuckDB
    relations only. Only the columns the query ``mentioned`` are streamed (all of them for a ``*``). Batches
    of a million rows: DuckDB exports a relation about twice as fast as in batches of 100k (measured)."""
    import pyarrow as pa

    try:
        from nbmcp.frames.sources import source_for
    except ImportError:
        source_for = None
    if source_for is None:
        if _module(obj) in ("duckdb", "_duckdb"):
            return obj.to_arrow_reader(batch_rows)
        raise QueryRefused(f"querying a {type(obj).__name__} needs nbmcp in the kernel's environment")
    source = source_for(obj)
    # Projection pushdown by hand: the stream is opaque to DuckDB, so the backend reads only what is needed.
    names = source.columns()
    wanted = None if "*" in mentioned else [c for c in names if c.lower() in mentioned] or names[:1]
    batches = iter(source.batches(wanted, batch_rows, sys.maxsize))
    first = next(batches, None)
    if first is None:  # no rows: an empty table of the right schema
        return source.slice_arrow(0, 0, wanted).to_reader()
    return pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))


# ------------------------------------------------------------------------------ checking a query


def _connect(memory_limit: str) -> Any:
    try:
        import duckdb
    except ImportError:
        raise QueryError("query needs DuckDB in the kernel's environment: pip install 'jupyter-nbmcp[data]'") from None

    con = duckdb.connect(":memory:", config={**_LOCKED_CONFIG, "memory_limit": memory_limit})
    # A query runs on a worker thread: DuckDB's progress widget would land in whatever cell the user runs.
    con.execute("SET enable_progress_bar = false")
    # Last: from here on nothing the query does can change a setting.
    con.execute("SET lock_configuration = true")
    return con


def _walk(node: Any, tables: list[dict[str, Any]], ctes: set[str], functions: set[str], columns: set[str]) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in ("BASE_TABLE", "TABLE_FUNCTION"):
            tables.append(node)
        if node.get("class") == "STAR":
            columns.add("*")
        elif node.get("class") == "COLUMN_REF" and node.get("column_names"):
            columns.update(str(part).lower() for part in node["column_names"])  # a qualifier or struct field: harmless
        if kind == "JOIN":
            columns.update(str(c).lower() for c in node.get("using_columns") or [])
            if node.get("ref_type") == "NATURAL":
                columns.add("*")
        if node.get("class") == "FUNCTION" and isinstance(node.get("function_name"), str):
            functions.add(node["function_name"].lower())
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map") or [])
        for value in node.values():
            _walk(value, tables, ctes, functions, columns)
    elif isinstance(node, list):
        for value in node:
            _walk(value, tables, ctes, functions, columns)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _names_list(names: Any) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


@dataclass
class _Checked:
    statement: str
    tables: dict[str, str]  # name as written (lower) -> exposed name
    functions: set[str]
    locations: list[tuple[int, int, str]]  # (byte offset, byte length, exposed name) of each table reference
    qualified: bool = False  # a table was named with its schema (main.sales)
    columns: set[str] = field(default_factory=set)  # column names the query mentions (lower case), "*" for a star
    uses: dict[str, int] = field(default_factory=dict)  # how often the query reads each exposed name


def check_query(sql: Any, names: Any, con: Any) -> _Checked:
    """Refuse ``sql`` unless it is one SELECT over ``names``; parsed by DuckDB on the locked ``con``."""
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused(f"sql must be a non-empty string with one SELECT statement; allowed: {ALLOWED}")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"sql: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"sql has {len(statements)} statements; allowed: {ALLOWED}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = str(statement.type).rsplit(".", 1)[-1]
        raise QueryRefused(f"sql is a {kind} statement, not a SELECT; allowed: {ALLOWED}")
    text = statement.query
    [(serialized,)] = con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
    tree = json.loads(serialized)
    if tree.get("error"):  # PIVOT and other forms the serializer cannot describe: they cannot be checked
        raise QueryRefused(f"sql: this form cannot be checked ({tree.get('error_message')}); allowed: {ALLOWED}")
    refs: list[dict[str, Any]] = []
    ctes: set[str] = set()
    functions: set[str] = set()
    columns: set[str] = set()
    _walk(tree, refs, ctes, functions, columns)
    exposed = {str(n).lower(): str(n) for n in names}
    tables: dict[str, str] = {}
    locations: list[tuple[int, int, str]] = []
    any_qualified = False
    uses: dict[str, int] = {}
    for ref in refs:
        if ref["type"] == "TABLE_FUNCTION":
            fn = str((ref.get("function") or {}).get("function_name", "")).lower()
            if fn not in _SAFE_TABLE_FUNCTIONS:
                raise QueryRefused(
                    f"sql calls the table function {fn}(), which query does not allow (files, settings and "
                    f"external data are off); query the exposed objects instead: {_names_list(exposed.values())}"
                )
            continue
        name = str(ref.get("table_name", ""))
        qualified = [p for p in (ref.get("catalog_name"), ref.get("schema_name")) if p]
        if name.lower() in ctes and not qualified:
            continue
        if "." in name or "/" in name or (qualified and qualified != ["main"]):
            what = ".".join([*qualified, name])
            raise QueryRefused(
                f"sql reads {what!r}: files and other databases are not available to query; "
                f"it reads only the exposed objects: {_names_list(exposed.values())}"
            )
        if name.lower() not in exposed:
            raise QueryRefused(
                f"sql reads {name!r}, which is not an exposed object; exposed objects: {_names_list(exposed.values())}"
            )
        tables[name.lower()] = exposed[name.lower()]
        uses[exposed[name.lower()]] = uses.get(exposed[name.lower()], 0) + 1
        any_qualified = any_qualified or bool(qualified)
        start = ref.get("query_location")
        if isinstance(start, int) and start < 2**63 and not qualified:
            # The name as written (the node's own span includes its alias): quoted or bare.
            written = len(name.encode()) + (2 if text.encode()[start : start + 1] == b'"' else 0)
            locations.append((start, written, exposed[name.lower()]))
    return _Checked(text, tables, functions, locations, any_qualified, columns, uses)


# ------------------------------------------------------------------------------ running it


def run_query(
    sql: str,
    sources: Mapping[str, Any],
    *,
    limit: int = DEFAULT_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
    save: bool = False,
    save_max_rows: int = DEFAULT_SAVE_MAX_ROWS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> QueryResult:
    """Run one read-only SELECT over ``sources`` (name -> frame); at most ``limit`` rows come back.

    ``save`` also keeps up to ``save_max_rows`` rows of the result (``saved``). Raises
    :class:`QueryRefused` for what is not allowed, :class:`QueryTimeout` past ``timeout`` seconds and
    :class:`QueryError` with the engine's message for the rest.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryRefused(f"limit must be a whole number between 1 and {MAX_LIMIT}, got {limit!r}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise QueryRefused(f"timeout must be a positive number of seconds, got {timeout!r}")
    started = time.perf_counter()
    con = _connect(memory_limit)  # first: a missing DuckDB is said before anything else
    try:
        checked = check_query(sql, sources, con)
        used = {name: sources[name] for name in checked.tables.values()}
        spark = sorted(n for n, v in used.items() if _kind(v) == "spark")
        if spark and len(spark) != len(used):
            others = sorted(set(used) - set(spark))
            raise QueryRefused(
                f"sql mixes Spark frames ({', '.join(spark)}) with other objects ({', '.join(others)}); "
                "one query runs on one engine: query them separately, or save_as a small result and join that"
            )
        fetch = max(limit, save_max_rows) if save else limit
        if spark:
            table, more = _run_spark(checked, used, fetch, timeout)
            engine = "spark"
        else:
            table, more = _run_duckdb(con, checked, used, fetch, timeout)
            engine = "duckdb"
    finally:
        con.close()
    result = QueryResult(
        rows=table.slice(0, limit),
        more=more or table.num_rows > limit,
        engine=engine,
        elapsed_s=time.perf_counter() - started,
        tables=sorted(used),
    )
    if save:
        result.saved, result.saved_truncated = table, more
    return result


def _timeout_message(timeout: float) -> str:
    return (
        f"the query was interrupted at its time limit of {timeout:g} s; the kernel is fine. Narrow it (a "
        "filter, fewer columns, an aggregate) or ask the notebook's owner for a longer query_timeout"
    )


def _run_duckdb(con: Any, checked: _Checked, used: dict[str, Any], fetch: int, timeout: float) -> tuple[Any, bool]:
    import duckdb

    for name, value in used.items():
        if _kind(value) == "once":
            raise QueryRefused(
                f"{name} is a pyarrow.RecordBatchReader, a stream that can be read only once: a query would use "
                "it up. Expose a pyarrow.Table (reader.read_all()) or a pyarrow.dataset instead"
            )
        if _kind(value) == "scan":
            con.register(name, value)
            continue
        stream = _arrow_stream(value, checked.columns)
        if checked.uses.get(name, 0) > 1:
            # A stream can be scanned once; a self-join reads it twice: keep it in memory (memory_limit bounds it).
            con.register("nbmcp_stream", stream)
            con.execute(f"CREATE TEMP TABLE {_quoted(name)} AS SELECT * FROM nbmcp_stream")
            con.unregister("nbmcp_stream")
        else:
            con.register(name, stream)
    timer = threading.Timer(timeout, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        table = con.sql(checked.statement).limit(fetch + 1).to_arrow_table()
    except duckdb.InterruptException:
        raise QueryTimeout(_timeout_message(timeout)) from None
    except duckdb.PermissionException as exc:
        raise QueryRefused(f"sql: {exc}; allowed: {ALLOWED}") from None
    except duckdb.Error as exc:
        raise QueryError(f"sql: {exc}") from None
    finally:
        timer.cancel()
    more = table.num_rows > fetch
    return (table.slice(0, fetch) if more else table), more


def _run_spark(checked: _Checked, used: dict[str, Any], fetch: int, timeout: float) -> tuple[Any, bool]:
    """Spark SQL over Spark frames: names become ``{name}`` arguments, which Spark binds as temporary
    views of its own (nothing is added to the user's session catalog)."""
    import uuid

    if checked.qualified:
        raise QueryRefused("sql on Spark frames must name them plainly (no schema), e.g. SELECT * FROM events")
    forbidden = checked.functions & _SPARK_FORBIDDEN_FUNCTIONS
    if forbidden:
        raise QueryRefused(f"sql calls {', '.join(sorted(forbidden))}, which query does not allow on Spark")
    raw = checked.statement.encode()
    pieces, end = [], 0
    for start, length, name in sorted(checked.locations):
        pieces.append(raw[end:start].decode().replace("{", "{{").replace("}", "}}"))
        pieces.append("{" + name + "}")
        end = start + length
    pieces.append(raw[end:].decode().replace("{", "{{").replace("}", "}}"))
    text = "".join(pieces)
    frame = next(iter(used.values()))
    spark = frame.sparkSession
    group = f"nbmcp-query-{uuid.uuid4().hex}"
    context = spark.sparkContext
    context.setJobGroup(group, "nbmcp query", interruptOnCancel=True)
    done, expired = threading.Event(), threading.Event()

    def cancel_until_done() -> None:
        # cancelJobGroup cancels the jobs running now; a query still planning starts its jobs later, so the
        # group is cancelled again until the query has returned.
        expired.set()
        while not done.is_set():
            with contextlib.suppress(Exception):
                context.cancelJobGroup(group)
            done.wait(0.25)

    timer = threading.Timer(timeout, cancel_until_done)
    timer.daemon = True
    timer.start()
    try:
        table = spark.sql(text, **used).limit(fetch + 1).toArrow()
    except Exception as exc:
        if expired.is_set():
            raise QueryTimeout(_timeout_message(timeout)) from None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueryError(f"sql (Spark): {message}") from None
    finally:
        done.set()
        timer.cancel()
        with contextlib.suppress(Exception):
            context.setLocalProperty("spark.jobGroup.id", None)
    more = table.num_rows > fetch
    return (table.slice(0, fetch) if more else table), more


# ------------------------------------------------------------------------------ kernel side of nbmcp serve

# variable -> id of the result save_as put there: the only variables it overwrites, while they still hold it
_saved: dict[str, int] = {}


def _records(table: Any) -> list[dict[str, Any]]:
    try:
        from nbmcp.frames import page

        return page(table, 0, table.num_rows)
    except ImportError:  # a kernel without nbmcp: plain records, made JSON by default=str
        return table.to_pylist()


def _payload(result: QueryResult) -> dict[str, Any]:
    return {
        "columns": list(result.rows.column_names),
        "rows": _records(result.rows),
        "more": result.more,
        "engine": result.engine,
        "elapsed_ms": round(result.elapsed_s * 1000, 1),
        "tables": result.tables,
    }


def run_json(
    sql: str,
    limit: int,
    timeout: float,
    save_as: str | None = None,
    save_max_rows: int = DEFAULT_SAVE_MAX_ROWS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> str:
    """``query`` over the kernel's variables, answered as JSON (``{"error": ...}`` when refused or failed).

    ``save_as`` assigns the result (a ``pyarrow.Table``) to a new variable; it never replaces a variable
    the user made.
    """
    try:
        from IPython import get_ipython

        ip = get_ipython()
        namespace, hidden = (ip.user_ns, set(ip.user_ns_hidden)) if ip is not None else (None, set())
    except ImportError:
        namespace, hidden = None, set()
    if namespace is None:
        import __main__

        namespace = vars(__main__)
    try:
        if save_as is not None and (not save_as.isidentifier() or save_as.startswith("_")):
            raise QueryRefused(f"save_as must be a variable name (letters, digits, _), got {save_as!r}")
        if save_as in namespace and id(namespace[save_as]) != _saved.get(save_as):
            raise QueryRefused(
                f"save_as={save_as!r} is already a variable in the kernel; query does not replace variables: "
                "choose another name"
            )
        result = run_query(
            sql,
            namespace_sources(namespace, hidden),
            limit=limit,
            timeout=timeout,
            save=save_as is not None,
            save_max_rows=save_max_rows,
            memory_limit=memory_limit,
        )
        data = _payload(result)
        if save_as is not None:
            namespace[save_as] = result.saved
            _saved[save_as] = id(result.saved)
            data["saved_as"] = {"name": save_as, "rows": result.saved.num_rows, "truncated": result.saved_truncated}
    except QueryError as exc:
        return json.dumps({"error": str(exc), "refused": isinstance(exc, QueryRefused)})
    except ModuleNotFoundError as exc:
        return json.dumps({"error": f"query needs {exc.name} in the kernel's environment: pip install {exc.name}"})
    except Exception as exc:
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    return json.dumps(data, default=str)
