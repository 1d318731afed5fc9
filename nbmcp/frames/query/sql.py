"""Read-only SQL over named frames: DuckDB in the kernel, Spark SQL for Spark frames. Safe by construction.

A query is refused before it runs unless DuckDB's own parser says it is exactly one ``SELECT`` (or
``WITH … SELECT``) statement whose tables are all among the given sources and whose table functions are
only generators (``range``, ``generate_series``, ``unnest``). It then runs on a connection of its own to an
in-memory DuckDB database opened with external access off (no files, network or extension installs), extension
autoloading off, Python replacement scans off and the configuration locked (kept warm for the next query with
the same settings), on which exactly the sources the query names are registered: pandas, polars and pyarrow
objects are scanned in place; a DuckDB relation over files is re-planned from its own SQL as a view, the
database allowing exactly the files it reads (so filters and projections reach DuckDB's own scan); other
DuckDB relations, Ibis tables and Dask frames stream in as Arrow, and the answer says so. The assistant's SQL
itself still calls no file function. A timer interrupts it at the time limit; the result is bounded in rows,
value sizes and bytes inside the engine, and its spilling in disk (:mod:`nbmcp.frames.query.sql_bounds`).

A query that Spark's own parser reads as naming Spark frames is checked and run by Spark alone
(:mod:`nbmcp.frames.query.spark_sql`), never by DuckDB's reading of it: the two parsers disagree on quotes,
escapes and comments. DuckDB's parser decides only what DuckDB runs, and DuckDB never reads Spark frames.

This module imports only the standard library at import time: ``nbmcp serve`` sends its source to the
kernel (which may not have nbmcp) and runs it there as one versioned module, its other modules (``sql_bounds``,
``sql_duckdb``, ``spark_sql``, ``kinds``, ``query_answer``...) beside it (:func:`install_siblings`).
"""

from __future__ import annotations

import json
import sys
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
    "install_siblings",
    "is_queryable",
    "namespace_sources",
    "run_json",
    "run_query",
    "shown_records",
    "source_kind",
    "timeout_message",
]

ALLOWED = (
    "one SELECT (or WITH ... SELECT) statement over the exposed objects, by their names; no files, "
    "table functions other than range/generate_series/unnest, settings, ATTACH, COPY, PRAGMA, SET or INSTALL"
)
# Scalar functions that reveal the kernel's environment (a spill directory's path, allowed_paths under the
# kernel's working directory, environment variables) or write to DuckDB's log: no use in read-only analysis.
REFUSED_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable", "write_log"})
DEFAULT_TIMEOUT = 30.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_SAVE_MAX_ROWS = 1_000_000
DEFAULT_MEMORY_LIMIT = "2GB"
# Bounds outside DuckDB's memory_limit (see nbmcp.frames.query.sql_bounds), in bytes: the rows shown, as Arrow (in the
# kernel: c.NbMCP.max_resource_bytes); a save_as result (c.NbMCP.query_save_max_bytes); spill disk (0: none).
DEFAULT_MAX_RESULT_BYTES = 32 * 1024 * 1024
DEFAULT_SAVE_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_SPILL_BYTES = 1024**3


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
    saved_over_bytes: bool = False  # the save stopped at its byte bound, not its row bound
    cut: list[dict[str, Any]] = field(default_factory=list)  # long values cut in ``rows``: column, rows, sizes
    big_integers: list[str] = field(default_factory=list)  # columns whose integers beyond 2**53 become JSON strings
    notes: list[str] = field(default_factory=list)  # how sources were read, where it costs speed (streamed as Arrow)


# ------------------------------------------------------------------------------ which objects are sources


def source_kind(obj: Any) -> str | None:
    """How SQL reaches ``obj`` (:data:`nbmcp.frames.kinds.BACKENDS`): "scan" (DuckDB scans it in place), "relation"
    (a DuckDB relation: re-planned from its own SQL, else streamed), "arrow" (streams in), "spark", "once" (a
    one-shot stream, refused), or None (not a table)."""
    return _kinds().sql_access(obj)


def is_queryable(obj: Any) -> bool:
    """Whether ``query`` can read ``obj`` as a table."""
    return source_kind(obj) is not None


def namespace_sources(namespace: Mapping[str, Any], hidden: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The tables of a user namespace: its public variables that SQL can read."""
    return _kinds().namespace_sources(namespace, hidden)


# ------------------------------------------------------------------------------ the engine's modules

# In a kernel that got the engine from nbmcp serve as sources: its modules by name (see install_siblings).
kernel_modules: dict[str, Any] | None = None


def _sibling(name: str) -> Any:
    """Another module of the query engine (``nbmcp.frames.query.<name>``, ``nbmcp.frames.kinds``), or its copy
    sent to the kernel."""
    if kernel_modules is not None:
        return kernel_modules[name]
    import importlib

    return importlib.import_module(f"nbmcp.frames.{name}" if name == "kinds" else f"nbmcp.frames.query.{name}")


def install_siblings(sources: Mapping[str, str]) -> None:
    """In a kernel that may have no nbmcp, ``nbmcp serve`` sends this module and the engine's other modules
    as sources: run each of those as a module of its own, and let each find the others (``kernel_modules``)."""
    import types

    modules: dict[str, Any] = {"sql": sys.modules[__name__]}
    for name, source in sources.items():
        module = sys.modules[f"{__name__}_{name}"] = types.ModuleType(f"{__name__}_{name}")  # dataclasses look there
        exec(compile(source, f"<nbmcp.frames.query.{name}>", "exec"), module.__dict__)
        modules[name] = module
    for module in modules.values():
        module.kernel_modules = modules


def _bounds() -> Any:
    return _sibling("sql_bounds")


def _kinds() -> Any:
    return _sibling("kinds")


def _duckdb() -> Any:
    """DuckDB's side of the engine (:mod:`nbmcp.frames.query.sql_duckdb`); a clear error where DuckDB is missing."""
    import importlib.util

    if importlib.util.find_spec("duckdb") is None:
        raise QueryError("query needs DuckDB in the kernel's environment: pip install 'jupyter-nbmcp[data]'")
    return _sibling("sql_duckdb")


# ------------------------------------------------------------------------------ checking a query


def _names_list(names: Any) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


@dataclass
class _Checked:
    statement: str
    tables: dict[str, str]  # name as written (lower) -> exposed name
    functions: set[str]
    columns: set[str] = field(default_factory=set)  # column names the query mentions (lower case), "*" for a star
    uses: dict[str, int] = field(default_factory=dict)  # how often the query reads each exposed name
    relations: dict[str, Any] = field(default_factory=dict)  # DuckDB relations read: sql_duckdb.RelationPlan
    notes: list[str] = field(default_factory=list)  # what the answer should say about how sources were read
    in_child: bool = False  # run in a forked child (sql_child): it may build values larger than numbers


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
    _duckdb().walk(tree, refs, ctes, functions, columns)
    exposed = {str(n).lower(): str(n) for n in names}
    tables: dict[str, str] = {}
    uses: dict[str, int] = {}
    for ref in refs:
        if ref["type"] == "TABLE_FUNCTION":
            fn = str((ref.get("function") or {}).get("function_name", "")).lower()
            if fn not in _duckdb().SAFE_TABLE_FUNCTIONS:
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
    multiplied = sorted(_duckdb().lambda_functions(tree) & _bounds().SIZED_FUNCTIONS)
    if multiplied:
        raise QueryRefused(
            f"sql builds {multiplied[0]}() inside a lambda (list_transform, a list comprehension, ...), which builds "
            "it once per element: past the bound for one value. Build it outside the lambda, or aggregate instead"
        )
    revealing = sorted(functions & REFUSED_FUNCTIONS)
    if revealing:
        raise QueryRefused(
            f"sql calls {revealing[0]}(), which reveals the kernel's settings, paths or environment; query reads "
            f"only the exposed objects: {_names_list(exposed.values())}"
        )
    child = _sibling("sql_child")
    return _Checked(text, tables, functions, columns, uses, in_child=child.available() and child.builds_values(tree))


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
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    save_max_bytes: int = DEFAULT_SAVE_MAX_BYTES,
    max_spill_bytes: int = DEFAULT_MAX_SPILL_BYTES,
) -> QueryResult:
    """Run one read-only SELECT over ``sources`` (name -> frame); at most ``limit`` rows come back.

    ``save`` also keeps up to ``save_max_rows`` rows of the result (``saved``), at most ``save_max_bytes``
    of them as Arrow. Long values are cut inside DuckDB (``result.cut`` says where); the rows shown are
    refused past ``max_result_bytes``; DuckDB spills at most ``max_spill_bytes`` to disk (0: none). Raises
    :class:`QueryRefused` for what is not allowed, :class:`QueryTimeout` past ``timeout`` seconds and
    :class:`QueryError` with the engine's message for the rest.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryRefused(f"limit must be a whole number between 1 and {MAX_LIMIT}, got {limit!r}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise QueryRefused(f"timeout must be a positive number of seconds, got {timeout!r}")
    started = time.perf_counter()
    # Spark cuts long values inside Spark as DuckDB does; with save_as, the rows shown are the first saved ones.
    spark_bounds = _sibling("spark_bounds")
    bounds = spark_bounds.SparkBounds.of(save, max_result_bytes, save_max_bytes)
    spark = _spark_first(sql, sources, max(limit, save_max_rows) if save else limit, timeout, bounds)
    if spark.table is not None:
        shown, cut = spark_bounds.first_rows(spark.fetched, limit, max_result_bytes)
        more = spark.more or spark.table.num_rows > limit
        result = QueryResult(shown, more, "spark", time.perf_counter() - started, spark.used, cut=cut)
        result.notes += _bounds().cut_notes(cut, "saved" if save else "shown")
        if save:
            result.saved, result.saved_truncated = spark.table, spark.more
            result.saved_over_bytes = spark.fetched.over_bytes
        _note_big_integers(result)
        return result
    try:
        duck = _duckdb()  # first: a missing DuckDB is said before anything else
        with duck.parsing() as parser:
            checked = check_query(sql, sources, parser)
    except QueryError as exc:
        if spark.error is None or isinstance(exc, QueryRefused):
            raise
        raise QueryError(f"{exc}\n(read as Spark SQL: {spark.error})") from None
    used = {name: sources[name] for name in checked.tables.values()}
    # DuckDB relations are re-planned on the query's connection, which may open exactly the files they read.
    taken = {name.lower() for name in used}
    checked.relations = {n: duck.relation_plan(v, taken) for n, v in used.items() if source_kind(v) == "relation"}
    replanned = [plan for plan in checked.relations.values() if plan.sql is not None]
    paths, directories = [p for r in replanned for p in r.paths], [d for r in replanned for d in r.directories]
    con = duck.warm_cursor(memory_limit, paths, directories, max_spill_bytes, forks=checked.in_child)
    try:
        _refuse_spark_frames(used, spark)
        bounds = _bounds().Bounds(limit, save_max_rows if save else 0, max_result_bytes, save_max_bytes)
        shown, saved = duck.run(con, checked, used, timeout, bounds)
        engine = "duckdb"
    finally:
        duck.release(con)  # the cursor; its database stays warm for the next query
    result = QueryResult(
        rows=shown.table,
        more=shown.more or (saved is not None and saved.more),
        engine=engine,
        elapsed_s=time.perf_counter() - started,
        tables=sorted(used),
        notes=checked.notes,
        cut=shown.cut,
    )
    result.notes += _bounds().cut_notes(shown.cut)
    if saved is not None:
        result.saved, result.saved_truncated, result.saved_over_bytes = saved.table, saved.more, saved.over_bytes
        result.notes += _bounds().cut_notes(saved.cut, "saved")
    _note_big_integers(result)
    return result


def _note_big_integers(result: QueryResult) -> None:
    result.big_integers = _bounds().big_integer_columns(result.rows)
    if result.big_integers:
        result.notes.append(
            f"integers beyond ±2**53 in {', '.join(result.big_integers)} are given as strings: JSON numbers would "
            "not hold them exactly"
        )


def timeout_message(timeout: float) -> str:
    return (
        f"the query was interrupted at its time limit of {timeout:g} s; the kernel is fine. Narrow it (a "
        "filter, fewer columns, an aggregate) or ask the notebook's owner for a longer query_timeout"
    )


def _spark_engine() -> Any:
    return _sibling("spark_sql")


def _spark_first(sql: Any, sources: Mapping[str, Any], fetch: int, timeout: float, bounds: Any) -> Any:
    """``spark_sql.first``: Spark checks and runs the query when its own parser reads it as naming exposed Spark
    frames (or DuckDB is missing); otherwise DuckDB takes it, and refuses any Spark frame it reads."""
    import importlib.util

    engine = _spark_engine()
    frames = {name: value for name, value in sources.items() if source_kind(value) == "spark"}
    if not frames or not isinstance(sql, str) or not sql.strip():
        return engine.Outcome()
    duckdb = importlib.util.find_spec("duckdb") is not None
    try:
        return engine.first(sql, sources, frames, fetch, timeout, duckdb_available=duckdb, bounds=bounds)
    except engine.SparkRefused as exc:
        raise QueryRefused(str(exc)) from None
    except engine.SparkTimeout:
        raise QueryTimeout(timeout_message(timeout)) from None
    except engine.SparkFailed as exc:
        raise QueryError(str(exc)) from None


def _refuse_spark_frames(used: Mapping[str, Any], spark: Any) -> None:
    """DuckDB never reads a Spark frame: when DuckDB's parser finds one that Spark's parser did not, the two
    read the text differently (a quote, an escape, a comment), and the query is refused."""
    named = sorted(name for name, value in used.items() if source_kind(value) == "spark")
    if not named:
        return
    if spark.error is not None:
        raise QueryError(f"sql (Spark): {spark.error}")
    raise QueryRefused(
        f"sql reads the Spark frame(s) {', '.join(named)} only as DuckDB's parser reads it; Spark's own parser "
        "reads this text differently (a quote, escape or comment means something else to it). Spark frames are "
        f"queried in Spark SQL, as Spark reads the text; allowed: {_spark_engine().allowed(spark.frames)}"
    )


# ------------------------------------------------------------------------------ kernel side of nbmcp serve

# variable -> id of the result save_as put there: the only variables it overwrites, while they still hold it
_saved: dict[str, int] = {}


def shown_records(table: Any) -> list[dict[str, Any]]:
    """The rows of a result as the answer shows them (both wings): records, like a read_rows page."""
    if not table.num_rows:
        return []
    try:
        from nbmcp.frames import page

        return page(table, 0, table.num_rows)
    except ImportError:  # a kernel without nbmcp: plain records (big integers as strings), JSON by default=str
        return _bounds().records(table)


def run_json(
    sql: str,
    limit: int,
    timeout: float,
    save_as: str | None = None,
    save_max_rows: int = DEFAULT_SAVE_MAX_ROWS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    save_max_bytes: int = DEFAULT_SAVE_MAX_BYTES,
    max_spill_bytes: int = DEFAULT_MAX_SPILL_BYTES,
) -> str:
    """``query`` over the kernel's variables, answered as JSON (``{"error": ...}`` when refused or failed).

    ``save_as`` assigns the result (a ``pyarrow.Table``) to a new variable; it never replaces a variable
    the user made.
    """
    namespace, hidden = _kinds().user_namespace()
    answer = _sibling("query_answer")
    try:
        problem = None if save_as is None else answer.save_as_problem(save_as)
        if problem is not None:
            raise QueryRefused(problem)
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
            max_result_bytes=max_result_bytes,
            save_max_bytes=save_max_bytes,
            max_spill_bytes=max_spill_bytes,
        )
        data = answer.payload(
            result,
            shown_records(result.rows),
            save_as=save_as,
            save_max_rows=save_max_rows,
            save_max_bytes=save_max_bytes,
        )
        if save_as is not None:
            namespace[save_as] = result.saved
            _saved[save_as] = id(result.saved)
    except QueryError as exc:
        return json.dumps({"error": str(exc), "refused": isinstance(exc, QueryRefused)})
    except ModuleNotFoundError as exc:
        return json.dumps({"error": f"query needs {exc.name} in the kernel's environment: pip install {exc.name}"})
    except Exception as exc:
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    return json.dumps(data, default=str)
