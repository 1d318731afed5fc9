"""DuckDB's side of ``query``: its own parser, the locked query databases (kept warm), relations re-planned.

Every query is parsed by DuckDB's own parser (:func:`parsing`, :func:`walk`) and runs on a cursor of a locked
in-memory database (:func:`warm_cursor`) with external access off, extension autoloading and Python replacement
scans off, and the bounds of :mod:`nbmcp.frames.query.sql_bounds`. A DuckDB relation lives on the user's own
connection: :func:`relation_plan` says whether it can be re-planned from its own SQL there, with exactly the
files it reads allowed, or must stream in as Arrow.

Like :mod:`nbmcp.frames.query.sql`, this module imports only the standard library at import time (``nbmcp serve``
sends it to kernels as source). It assumes DuckDB is installed: :mod:`nbmcp.frames.query.sql` says so first.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FILE_READERS",
    "SAFE_TABLE_FUNCTIONS",
    "RelationPlan",
    "arrow_stream",
    "connect",
    "lambda_functions",
    "parsing",
    "relation_plan",
    "release",
    "run",
    "walk",
    "warm_cursor",
]

# In a kernel that got the engine from nbmcp serve as sources: its modules by name (sql.install_siblings).
kernel_modules: dict[str, Any] | None = None


def _bounds() -> Any:
    return _sibling("sql_bounds")


def _sibling(name: str) -> Any:
    """Another module of the query engine (``nbmcp.frames.query.<name>``, ``nbmcp.frames.kinds``), or its copy
    sent to the kernel."""
    if kernel_modules is not None:
        return kernel_modules[name]
    import importlib

    return importlib.import_module(f"nbmcp.frames.{name}" if name == "kinds" else f"nbmcp.frames.query.{name}")


# Generators only: every other table function reads something (files, settings, the catalog of extensions).
SAFE_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
# Table functions whose first argument names the files they read: a DuckDB relation built only from these (with
# literal paths) and generators is re-planned in the query's connection with exactly those files allowed.
FILE_READERS = {"read_parquet", "parquet_scan", "read_csv", "read_csv_auto", "read_json", "read_json_auto"}
FILE_READERS |= {"read_ndjson", "read_ndjson_auto"}
LOCKED_CONFIG = {"enable_external_access": False, "autoload_known_extensions": False}
LOCKED_CONFIG |= {
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
}  # plus those of WARM_CONFIG this DuckDB has, added by _parsing when it first connects
# Query databases are kept warm between queries (_warm_cursor): they must not hold on to memory in the kernel. No
# cache of the files they read; memory freed after a query goes back to the system (measured: a 1M-group aggregate
# left 250 MB held by an idle database, ~0 with these).
WARM_CONFIG = {"enable_external_file_cache": False, "allocator_flush_threshold": "16MB"}
WARM_CONFIG["allocator_background_threads"] = True

_parser_lock = threading.Lock()
_parser: list[Any] = []  # one private connection, used only to parse (json_serialize_sql), under the lock


@contextlib.contextmanager
def parsing() -> Any:
    """A locked DuckDB connection for DuckDB's own parser (kept: connecting costs 15-30 ms, parsing 0.5 ms)."""
    import duckdb

    with _parser_lock:
        if not _parser:
            parser = duckdb.connect(":memory:", config={**LOCKED_CONFIG, "memory_limit": "64MB"})
            known = parser.execute("SELECT name FROM duckdb_settings()").fetchall()
            LOCKED_CONFIG.update({k: v for k, v in WARM_CONFIG.items() if (k,) in known})
            parser.execute("SET lock_configuration = true")
            _parser.append(parser)
        yield _parser[0]


@dataclass
class RelationPlan:
    """How ``query`` reads a DuckDB relation (which lives on the user's own connection): re-planned from its own
    SQL on the query's connection, with exactly the files it reads allowed, so filters and projections push
    down; or streamed as Arrow (``streamed`` says why) when it reads what only its own connection has."""

    sql: str | None = None
    paths: list[str] = field(default_factory=list)  # files DuckDB may open for it (absolute)
    directories: list[str] = field(default_factory=list)  # directories of its globs
    plain_parquet: bool = False  # SELECT * over one Parquet scan: its row count is in the files' metadata
    streamed: str | None = None


def _literal_strings(node: Any) -> list[str] | None:
    """A constant string, or a list of them, in DuckDB's serialized parse tree; None for anything computed."""
    if not isinstance(node, dict):
        return None
    if node.get("class") == "CONSTANT":
        literal, value = node.get("literal") or {}, node.get("value") or {}  # DuckDB >= 2; 1.x
        if literal.get("kind") == "STRING":
            return [str(literal.get("text"))]
        if (value.get("type") or {}).get("id") == "VARCHAR" and not value.get("is_null"):
            return [str(value.get("value"))]
        return None
    if node.get("class") == "FUNCTION" and node.get("function_name") == "list_value":
        strings = [_literal_strings(arg) for arg in _positional(node)]
        return None if any(s is None for s in strings) else [x for s in strings for x in s or []]
    return None


def _positional(function: dict[str, Any]) -> list[Any]:
    if "arguments" in function:  # DuckDB >= 2: [{"name", "expression"}]
        return [a.get("expression") for a in function["arguments"] if not a.get("name")]
    return [c for c in function.get("children") or [] if isinstance(c, dict) and not c.get("alias")]


def _is_plain_scan(node: dict[str, Any]) -> bool:
    """``SELECT * FROM read_parquet(...)`` and nothing else (no filter, sample, limit, grouping, CTE)."""
    select, source = node.get("select_list") or [], node.get("from_table") or {}
    star = select[0] if len(select) == 1 else {}
    reader = str((source.get("function") or {}).get("function_name", "")).lower()
    if source.get("type") == "BASE_TABLE" and _file_name(str(source.get("table_name", ""))).endswith(".parquet"):
        reader = "read_parquet"  # FROM 'orders.parquet'
    shaped = any(star.get(k) for k in ("exclude_list", "replace_list", "rename_list", "expr", "columns"))
    clauses = ("modifiers", "where_clause", "group_expressions", "group_sets", "having", "sample", "qualify")
    return (
        node.get("type") == "SELECT_NODE"
        and star.get("class") == "STAR"
        and not shaped
        and reader in ("read_parquet", "parquet_scan")
        and not source.get("sample")
        and not any(node.get(k) for k in clauses)
        and not (node.get("cte_map") or {}).get("map")
    )


def _file_name(name: str) -> str:
    """``name`` without a compression suffix if DuckDB reads it as a file (``FROM 'orders.parquet'``), else ''."""
    bare = name.lower().removesuffix(".gz").removesuffix(".zst")
    return bare if bare.endswith((".parquet", ".csv", ".tsv", ".json", ".jsonl", ".ndjson")) else ""


def _allow(plan: RelationPlan, file: str) -> str | None:
    """Add ``file`` (a path or a glob) to what ``plan`` may open; why not, for a remote one."""
    if "://" in file:
        return f"it reads {file}, not a local file"
    path = os.path.abspath(os.path.expanduser(file))
    wildcard = min((i for i, ch in enumerate(path) if ch in "*?[{"), default=None)
    if wildcard is None:
        plan.paths.append(path)
    else:  # a glob: the directory before its first wildcard (the view's SQL still reads only the glob)
        plan.directories.append(os.path.join(os.path.dirname(path[:wildcard]), ""))
    return None


def relation_plan(relation: Any, taken: set[str] | frozenset[str] = frozenset()) -> RelationPlan:
    """Whether ``relation`` can be re-planned from ``relation.sql_query()``: only file readers with literal
    paths, generators and its own CTEs (none named like an exposed name in ``taken``, lower case) may appear.
    A table of the user's connection, a Python object scanned there, any other table function: streamed."""
    import duckdb

    try:
        text = relation.sql_query()
        with parsing() as parser:
            [(serialized,)] = parser.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
    except duckdb.Error as exc:
        return RelationPlan(streamed=f"its SQL cannot be parsed here ({str(exc).splitlines()[0]})")
    tree = json.loads(serialized)
    statements = tree.get("statements") or []
    if tree.get("error") or len(statements) != 1:
        return RelationPlan(streamed="its SQL cannot be re-planned (not one SELECT DuckDB can serialize)")
    refs: list[dict[str, Any]] = []
    ctes: set[str] = set()
    walk(tree, refs, ctes, set(), set())
    plan = RelationPlan(sql=text)
    for ref in refs:
        if ref["type"] == "BASE_TABLE":
            name = str(ref.get("table_name", ""))
            plain = not ref.get("schema_name") and not ref.get("catalog_name")
            if plain and name.lower() in ctes and name.lower() not in taken:
                continue
            # FROM 'orders.parquet': DuckDB reads the file (if there is one, not a table of that name)
            if plain and _file_name(name) and glob.glob(os.path.expanduser(name)):
                reason = _allow(plan, name)
                if reason is None:
                    continue
                return RelationPlan(streamed=reason)
            what = "a Python object it scans" if name.startswith("__duckdb_source_") else f"the table {name}"
            return RelationPlan(streamed=f"it reads {what}, which only its own DuckDB connection has")
        function = ref.get("function") or {}
        reader = str(function.get("function_name", "")).lower()
        if reader in SAFE_TABLE_FUNCTIONS:
            continue
        arguments = _positional(function)
        files = _literal_strings(arguments[0]) if reader in FILE_READERS and arguments else None
        if files is None:
            return RelationPlan(streamed=f"it calls {reader}(), re-planned only over literal file paths")
        for file in files:
            reason = _allow(plan, file)
            if reason is not None:
                return RelationPlan(streamed=reason)
    plan.plain_parquet = len(refs) == 1 and _is_plain_scan(statements[0].get("node") or {})
    return plan


def connect(
    memory_limit: str,
    allowed_paths: Sequence[str] = (),
    allowed_directories: Sequence[str] = (),
    *,
    max_spill_bytes: int,
    forks: bool | None = None,
) -> Any:
    """A locked in-memory connection; close it with ``sql_bounds.remove_spill_directory`` (its spill directory).
    Where queries run in a forked child, the kernel's copy keeps no worker threads and is locked by each child
    (``sql_child.prepare``), after the child has its own spill directory: the kernel runs no query on it."""
    import duckdb

    config = {**LOCKED_CONFIG, "memory_limit": memory_limit, **_bounds().spill_config(max_spill_bytes)}
    forks = _sibling("sql_child").available() if forks is None else forks
    if forks:  # no worker threads to lose in a forked child: it starts its own
        config["threads"] = 1
    if forks or allowed_paths or allowed_directories:  # DuckDB takes these while external access is on: then off
        config.pop("enable_external_access")
    try:
        con = duckdb.connect(":memory:", config=config)
    except BaseException:
        if config.get("temp_directory"):
            os.rmdir(config["temp_directory"])
        raise
    try:
        if allowed_paths or allowed_directories:
            con.execute("SET allowed_paths = ?", [sorted(set(allowed_paths))])
            con.execute("SET allowed_directories = ?", [sorted(set(allowed_directories))])
        # A query runs on a worker thread: DuckDB's progress widget would land in whatever cell the user runs.
        con.execute("SET enable_progress_bar = false")
        for guard in _bounds().guard_macros():  # repeat(), range()...: refuse a huge value before building it
            con.execute(guard)  # (in the database's own catalog, so that every cursor of it has them)
        if not forks:  # Last: from here on nothing the query does can change a setting.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except BaseException:
        _bounds().remove_spill_directory(con)
        raise
    return con


# A query runs on a cursor of a warm locked database, not on a database of its own: opening one costs 15-30 ms and
# its first scan runs cold (a group-by over 5M Parquet rows: 1.7x the user's own connection, measured; a cursor of a
# warm database: 0.9-1.05x). A cursor is a connection of its own (views, registrations and temp tables are its own
# and go with it); the database's settings (memory, spill bound, the exact files allowed) are the key it is kept
# under, and it is locked. The last few are kept; a retired one is closed (with its spill directory) when its last
# query ends.
_WARM_DATABASES = 3
_warm_lock = threading.Lock()
_warm: dict[tuple[Any, ...], _WarmDatabase] = {}  # oldest first
_leased: dict[int, tuple[Any, _WarmDatabase]] = {}  # id(cursor) -> (cursor, its database)


@dataclass
class _WarmDatabase:
    con: Any
    users: int = 0
    retired: bool = False


def warm_cursor(
    memory_limit: str,
    allowed_paths: Sequence[str],
    allowed_directories: Sequence[str],
    max_spill_bytes: int,
    forks: bool = False,
) -> Any:
    """A fresh connection (cursor) to the warm locked database for these settings; give it back with release."""
    key = (memory_limit, max_spill_bytes, tuple(sorted(set(allowed_paths))), tuple(sorted(set(allowed_directories))))
    key += (forks,)  # a database for forked children is set up differently
    with _warm_lock:
        database = _warm.pop(key, None)
    if database is None:
        database = _WarmDatabase(
            connect(memory_limit, allowed_paths, allowed_directories, max_spill_bytes=max_spill_bytes, forks=forks)
        )
    with _warm_lock:
        if key in _warm:  # another query opened one meanwhile: keep theirs, retire ours after this query
            database.retired = True
        else:
            _warm[key] = database
        retired = []
        while len(_warm) > _WARM_DATABASES:
            oldest = _warm.pop(next(iter(_warm)))
            oldest.retired = True
            retired += [oldest] if oldest.users == 0 else []
        cursor = database.con.cursor()
        database.users += 1
        _leased[id(cursor)] = (cursor, database)
    for old in retired:
        _bounds().remove_spill_directory(old.con)
    return cursor


def release(cursor: Any) -> None:
    """Close a query's cursor; close its database too when it was retired and this was its last query."""
    cursor.close()
    with _warm_lock:
        _, database = _leased.pop(id(cursor))
        database.users -= 1
        done = database.retired and database.users == 0
    if done:
        _bounds().remove_spill_directory(database.con)


@atexit.register
def _close_warm_databases() -> None:
    with _warm_lock:
        databases = list(_warm.values())
        _warm.clear()
    for database in databases:
        with contextlib.suppress(Exception):
            _bounds().remove_spill_directory(database.con)


def walk(node: Any, tables: list[dict[str, Any]], ctes: set[str], functions: set[str], columns: set[str]) -> None:
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
            walk(value, tables, ctes, functions, columns)
    elif isinstance(node, list):
        for value in node:
            walk(value, tables, ctes, functions, columns)


def lambda_functions(node: Any, inside: bool = False) -> set[str]:
    """The functions called inside lambdas of a serialized parse tree (lower case)."""
    found: set[str] = set()
    if isinstance(node, dict):
        inside = inside or node.get("class") == "LAMBDA"
        if inside and node.get("class") == "FUNCTION" and isinstance(node.get("function_name"), str):
            found.add(node["function_name"].lower())
        for value in node.values():
            found |= lambda_functions(value, inside)
    elif isinstance(node, list):
        for value in node:
            found |= lambda_functions(value, inside)
    return found


# ------------------------------------------------------------------------------ running a query


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def arrow_stream(obj: Any, mentioned: set[str], batch_rows: int = 1_000_000) -> Any:
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
        if type(obj).__module__.split(".")[0] in ("duckdb", "_duckdb"):
            return obj.to_arrow_reader(batch_rows)
        raise _sibling("sql").QueryRefused(f"querying a {type(obj).__name__} needs nbmcp in the kernel's environment")
    source = source_for(obj)
    # Projection pushdown by hand: the stream is opaque to DuckDB, so the backend reads only what is needed.
    names = source.columns()
    wanted = None if "*" in mentioned else [c for c in names if c.lower() in mentioned] or names[:1]
    batches = iter(source.batches(wanted, batch_rows, 2**32 - 1))  # no limit (polars counts rows in 32 bits)
    first = next(batches, None)
    if first is None:  # no rows: an empty table of the right schema
        return source.slice_arrow(0, 0, wanted).to_reader()
    return pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))


def run(con: Any, checked: Any, used: dict[str, Any], timeout: float, bounds: Any) -> tuple[Any, Any]:
    """The rows shown and, for save_as, the rows saved (``sql_bounds.Fetched``): each bounded inside DuckDB,
    and built in a child of the kernel under an address-space limit where it can be (:mod:`.sql_child`)."""
    sql, cut, child = _sibling("sql"), _bounds(), _sibling("sql_child")
    for name, value in used.items():
        if sql.source_kind(value) == "once":
            raise sql.QueryRefused(
                f"{name} is a pyarrow.RecordBatchReader, a stream that can be read only once: a query would use "
                "it up. Expose a pyarrow.Table (reader.read_all()) or a pyarrow.dataset instead"
            )
    streamed = []
    with child.fork_lock:  # no fork while the database is in use here: the child would find its locks taken
        qualified = cut.qualified_function(con, checked.statement)
        if qualified:
            raise sql.QueryRefused(
                f"sql calls {qualified}(): call functions by their plain names; allowed: {sql.ALLOWED}"
            )
        settings = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        [(limit, spill)] = con.execute(settings).fetchall() if checked.in_child else [("", "")]
        for name, value in used.items():
            in_place = child.scannable(value) if checked.in_child else value
            if sql.source_kind(value) == "scan" and in_place is not None:
                con.register(name, in_place)
                continue
            plan = checked.relations.get(name)
            if plan is not None and plan.sql is not None:
                try:  # the relation's own SQL as a view: DuckDB plans it with the query (projection, filters)
                    con.execute(f"CREATE TEMP VIEW {_quoted(name)} AS {plan.sql}")
                    continue
                except Exception as exc:  # duckdb.Error, e.g. a macro or UDF of its own connection
                    plan.streamed = f"its SQL does not run on the query's connection ({str(exc).splitlines()[0]})"
            if plan is not None:
                checked.notes.append(f"{name} streamed as Arrow, more slowly (every row crosses over): {plan.streamed}")
            streamed.append(name)
    readers = {name: arrow_stream(used[name], checked.columns) for name in streamed}  # read in the kernel

    def work(con: Any, readers: dict[str, Any]) -> tuple[Any, Any]:
        for name, reader in readers.items():
            if checked.uses.get(name, 0) > 1:  # a stream is read once; a self-join reads it twice (memory_limit)
                con.register("nbmcp_stream", reader)
                con.execute(f"CREATE TEMP TABLE {_quoted(name)} AS SELECT * FROM nbmcp_stream")
                con.unregister("nbmcp_stream")
            else:
                con.register(name, reader)
        return _fetch(con, checked.statement, bounds)

    errors = {"QueryError": sql.QueryError, "QueryRefused": sql.QueryRefused, "QueryTimeout": sql.QueryTimeout}
    if not checked.in_child:
        return child.run_here(work, con, readers, timeout, errors["QueryTimeout"](sql.timeout_message(timeout)))
    budget = child.parse_size(limit) + child.VALUES_HEADROOM + 2 * (bounds.max_result_bytes + bounds.save_max_bytes)
    memory = (
        f"the query needed more than the {cut.human_size(budget)} of memory a query may take (its memory limit of "
        f"{limit}, c.NbMCP.query_memory_limit, the values it builds and its result): narrow it (a filter, fewer "
        "columns, an aggregate, shorter values)"
    )
    spill = spill if os.path.basename(os.path.normpath(spill or "/")).startswith(cut.SPILL_PREFIX) else ""
    return child.run_in_child(work, con, readers, budget, timeout, errors, sql.timeout_message(timeout), memory, spill)


def _fetch(con: Any, statement: str, bounds: Any) -> tuple[Any, Any]:
    """Run ``statement`` on ``con``: the rows shown and the rows saved, with DuckDB's errors said as query's."""
    import duckdb

    sql, cut = _sibling("sql"), _bounds()
    try:
        relation, saved = con.sql(statement), None  # planned, not run: its column types tell how to cut
        if bounds.save_rows:
            rows = max(bounds.limit, bounds.save_rows)
            saved = cut.fetch(con, relation, rows, cut.SAVED_VALUE_BYTES, bounds.save_max_bytes, refuse=False)
            relation = con.from_arrow(saved.table)  # the rows shown: the first saved ones, cut further
        shown = cut.fetch(con, relation, bounds.limit, cut.SHOWN_VALUE_BYTES, bounds.max_result_bytes, refuse=True)
    except cut.TooLarge as exc:
        raise sql.QueryRefused(f"{exc} (in a notebook the bound is c.NbMCP.max_resource_bytes)") from None
    except duckdb.InterruptException:
        raise
    except duckdb.PermissionException as exc:
        raise sql.QueryRefused(f"sql: {exc}; allowed: {sql.ALLOWED}") from None
    except duckdb.OutOfMemoryException as exc:
        raise sql.QueryError(cut.out_of_memory(con, str(exc))) from None
    except duckdb.Error as exc:
        raise sql.QueryError(f"sql: {exc}") from None
    if saved is not None:  # a value cut for saving says how big it was before
        sizes = {(c["column"], r): s for c in saved.cut for r, s in zip(c["rows"], c["sizes"])}  # noqa: B905
        for entry in shown.cut:
            entry["sizes"] = [sizes.get((entry["column"], r), s) for r, s in zip(entry["rows"], entry["sizes"])]  # noqa: B905
    return shown, saved
