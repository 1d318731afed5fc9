"""Bounds of a ``query`` result outside DuckDB's ``memory_limit``: rows, long values, bytes and spill disk.

DuckDB's ``memory_limit`` covers its operators (joins, aggregates, sorts) but not the copies of a result
that leave it: a 40-byte ``SELECT repeat('x', 2000000000)`` became 2 GB of Arrow, then Python strings, then
JSON (9.8 GB in all). So a result is bounded while still in the engine: the checked statement is wrapped in
``SELECT <each column cut> FROM (<statement>) LIMIT rows + 1`` (text to ``left()``, blobs to a byte slice,
lists and maps to their first elements, struct fields alike, recursively), with a column per cuttable
column saying which values were cut and how big they were; the Arrow batches are counted in bytes before
anything becomes Python. Spilling goes to a temporary directory of nbmcp's own, capped, removed afterwards.

Only the standard library is imported here at import time: ``nbmcp serve`` sends this source to the kernel
with :mod:`nbmcp.frames.query.sql`'s, as the module ``_nbmcp_sql_bounds``.
"""

from __future__ import annotations

import contextlib
import decimal
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_MAX_SPILL_BYTES",
    "DEFAULT_SAVE_MAX_BYTES",
    "SAVED_VALUE_BYTES",
    "SHOWN_VALUE_BYTES",
    "SIZED_FUNCTIONS",
    "SPILL_PREFIX",
    "Bounds",
    "Fetched",
    "big_integer_columns",
    "cut_notes",
    "fetch",
    "guard_macros",
    "human_size",
    "out_of_memory",
    "qualified_function",
    "records",
    "remove_spill_directory",
    "spill_config",
]

DEFAULT_MAX_RESULT_BYTES = 32 * 1024 * 1024  # the rows shown (as Arrow); in-kernel: c.NbMCP.max_resource_bytes
DEFAULT_SAVE_MAX_BYTES = 256 * 1024 * 1024  # a save_as result (as Arrow); in-kernel: c.NbMCP.query_save_max_bytes
DEFAULT_MAX_SPILL_BYTES = 1024**3  # disk one query may spill to; 0: none. c.NbMCP.query_max_spill_bytes
SHOWN_VALUE_BYTES = 8_000  # one value shown: text cut at 2,000 characters, lists at 500 numbers
SAVED_VALUE_BYTES = 256 * 1024  # one value saved: text cut at 65,536 characters
EXACT_INTEGERS = 2**53  # JSON numbers (doubles, in JavaScript clients) hold integers exactly below this
SPILL_PREFIX = "nbmcp-query-spill-"
# Types whose values have a fixed, small size; every other type is cut (unknown ones as text).
_FIXED = {
    "boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
    "ubigint", "uhugeint", "float", "double", "decimal", "date", "time", "time_ns", "time with time zone",
    "timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns", "timestamp with time zone", "timestamptz_ns",
    "interval", "uuid", "enum", "null", "sqlnull",
}  # fmt: skip


# ------------------------------------------------------------------------------ spilling


def spill_config(max_spill_bytes: int) -> dict[str, Any]:
    """DuckDB settings for a query's database: spill into a new directory of nbmcp's own, at most
    ``max_spill_bytes`` (else DuckDB spills into ``<cwd>/.tmp`` up to 90% of the disk); 0: no spilling."""
    if max_spill_bytes <= 0:
        return {"temp_directory": ""}
    _remove_stale_spill_directories()
    directory = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-")
    return {"temp_directory": directory, "max_temp_directory_size": f"{max_spill_bytes}B"}


def _remove_stale_spill_directories() -> None:
    """Remove the spill directories of processes that are gone (a kernel killed before it could clean up)."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX
        return
    with contextlib.suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            pid = entry.name[len(SPILL_PREFIX) :].split("-")[0]
            if not entry.name.startswith(SPILL_PREFIX) or not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:  # alive, another user's
                pass


def remove_spill_directory(con: Any) -> None:
    """Close ``con`` and remove its spill directory (only one that :func:`spill_config` made)."""
    try:
        [(directory,)] = con.execute("SELECT current_setting('temp_directory')").fetchall()
    except Exception:  # closed already, or no such setting: nothing of ours to find
        directory = ""
    con.close()
    if directory and os.path.basename(os.path.normpath(directory)).startswith(SPILL_PREFIX):
        shutil.rmtree(directory, ignore_errors=True)


def human_size(n: float) -> str:
    """``n`` bytes as a person reads them (1.5 MiB)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def out_of_memory(con: Any, message: str) -> str:
    """What to say when DuckDB ran out of memory or of spill disk (``message`` is DuckDB's)."""
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit', 'max_temp_directory_size')"
        ).fetchall()
    )
    memory = f"its memory limit of {settings.get('memory_limit')} (c.NbMCP.query_memory_limit)"
    if "max_temp_directory_size" in message:
        return (
            f"the query needed more than {settings.get('max_temp_directory_size')} of disk to spill to, beyond "
            f"{memory}: "
            "narrow it (a filter, fewer columns, an aggregate before a join), or ask the notebook's owner to raise "
            "c.NbMCP.query_max_spill_bytes (nbmcp serve --query-max-spill-bytes)"
        )
    if "no temporary directory" in message:
        return (
            f"the query needed more than {memory}, and spilling to disk is off (c.NbMCP.query_max_spill_bytes = 0): "
            "narrow it (a filter, fewer columns, an aggregate), or ask the notebook's owner to allow spilling"
        )
    return f"the query needed more than {memory}: narrow it (a filter, fewer columns, an aggregate)"


# ------------------------------------------------------------------------------ values built in the engine

# DuckDB's memory_limit counts no single value: repeat('x', 2000000000) took 3.9 GB and range(0, 200000000)
# 13.9 GB (measured, DuckDB 2.0.1) with a 2 GB limit. The functions that build a value much larger than their
# arguments are shadowed on the query's connection by macros that refuse past these sizes first.
GENERATED_TEXT_BYTES = 64 * 1024 * 1024
GENERATED_ELEMENTS = 4 * 1024 * 1024
_FORMAT_ARGUMENTS = 20  # printf()/format() guarded with up to this many values (a macro has no variadic form)


def _refusal(function: str, what: str) -> str:
    return _literal(
        f"{function}() would build a value of more than {what}; query builds at most that much in one value "
        "(DuckDB's memory limit does not count it): build less, or aggregate instead"
    )


# The functions guard_macros shadows that build a value from a size argument. Inside a lambda (list_transform, a
# list comprehension) one runs once per element, so the bound for one value no longer bounds the list: refused
# there (the others, e.g. replace or ||, grow with their inputs and have everyday uses inside lambdas).
SIZED_FUNCTIONS = frozenset(
    {"array_resize", "format", "generate_series", "list_resize", "lpad", "printf", "range", "repeat", "rpad"}
)


def guard_macros() -> list[str]:
    """``CREATE MACRO`` statements shadowing the value-building functions with size checks. The check is
    inside the size argument: DuckDB folds constants ahead of a CASE, so the call itself must never start."""
    text, n = GENERATED_TEXT_BYTES, GENERATED_ELEMENTS
    statements = []
    for f in ("range", "generate_series"):
        refuse = f"error({_refusal(f, f'{n:,} elements')})"
        # a + 0 * s: numbers stay numbers and dates become timestamps, so one size check binds for both
        a, b = "(a + s * 0)", "(b + s * 0)"
        statements.append(
            f"CREATE MACRO {f}(b) AS system.main.{f}(CASE WHEN b > {n} THEN {refuse} ELSE b END), "
            f"(a, b) AS system.main.{f}(a, CASE WHEN b - a > {n} THEN {refuse} ELSE b END), "
            f"(a, b, s) AS system.main.{f}(a, CASE WHEN greatest({b} - {a}, {a} - {b}) > greatest(s, s * -1) * {n}.0 "
            f"THEN {refuse} ELSE b END, s)"
        )
    refuse = f"error({_refusal('repeat', human_size(text))})"
    statements.append(
        "CREATE MACRO repeat(s, k) AS system.main.repeat(s, "
        f"CASE WHEN strlen(CAST(s AS VARCHAR)) * greatest(k, 0) > {text} THEN {refuse} ELSE k END)"
    )
    for f in ("lpad", "rpad"):
        refuse = f"error({_refusal(f, human_size(text))})"
        statements.append(
            f"CREATE MACRO {f}(s, k, p) AS system.main.{f}(s, CASE WHEN k > {text} THEN {refuse} ELSE k END, p)"
        )
    # replace(): the occurrences of f (counted by removing them) times what each adds.
    refuse = f"error({_refusal('replace', human_size(text))})"
    grown = "(strlen(s) - strlen(system.main.replace(s, f, ''))) // greatest(strlen(f), 1) * (strlen(t) - strlen(f))"
    statements.append(
        f"CREATE MACRO replace(s, f, t) AS system.main.replace(s, f, "
        f"CASE WHEN strlen(s) + greatest({grown}, 0) > {text} THEN {refuse} ELSE t END)"
    )
    # regexp_replace(): at most a match per character, each replaced by r (a backreference repeats a match).
    refuse = f"error({_refusal('regexp_replace', human_size(text))})"
    r = f"CASE WHEN (strlen(s) + 1) * greatest(strlen(r), 1) > {text} THEN {refuse} ELSE r END"
    statements.append(
        f"CREATE MACRO regexp_replace(s, p, r) AS system.main.regexp_replace(s, p, {r}), "
        f"(s, p, r, o) AS system.main.regexp_replace(s, p, {r}, o)"
    )
    # printf() and format(): widths are numbers in the format string; their sum bounds the padding.
    for f in ("printf", "format"):
        refuse = f"error({_refusal(f, human_size(text))})"
        widths = "list_sum(list_transform(regexp_extract_all(fmt, '[0-9]+'), lambda w: w::DOUBLE))"
        checked = f"CASE WHEN coalesce({widths}, 0) > {text} THEN {refuse} ELSE fmt END"
        overloads = [", ".join(["fmt", *(f"a{i}" for i in range(k))]) for k in range(_FORMAT_ARGUMENTS + 1)]
        statements.append(
            f"CREATE MACRO {f}"
            + ", ".join(f"({o}) AS system.main.{f}({o.replace('fmt', checked, 1)})" for o in overloads)
        )
    # concat_ws(): a separator between each two values (a 60 MB one between ten: 1.3 GB outside the memory limit)
    refuse = f"error({_refusal('concat_ws', human_size(text))})"
    overloads = []
    for k in range(1, _FORMAT_ARGUMENTS + 1):
        values = [f"a{i}" for i in range(k)]
        total = " + ".join([f"strlen(sep) * {k - 1}", *(f"coalesce(strlen(CAST({v} AS VARCHAR)), 0)" for v in values)])
        checked = f"CASE WHEN {total} > {text} THEN {refuse} ELSE sep END"
        overloads.append(f"(sep, {', '.join(values)}) AS system.main.concat_ws({checked}, {', '.join(values)})")
    statements.append("CREATE MACRO concat_ws" + ", ".join(overloads))
    # array_to_string(): the sum of its elements as text, and a separator between each two.
    refuse = f"error({_refusal('array_to_string', human_size(text))})"
    joined = "list_sum(list_transform(l, lambda x: strlen(CAST(x AS VARCHAR)) + strlen(sep)))"
    statements.append(  # (its separator must be a constant: the check goes in the list)
        f"CREATE MACRO array_to_string(l, sep) AS system.main.array_to_string("
        f"CASE WHEN coalesce({joined}, 0) > {text} THEN {refuse} ELSE l END, sep)"
    )
    # a || b: a chain of them built each step outside the memory limit (10 x 60 MB: 2.2 GB under a 300 MB limit);
    # concat() is counted. A macro named || shadows the operator (for text, blobs and lists alike).
    refuse = f"error({_refusal('||', human_size(text))})"
    both = "strlen(CAST(a AS VARCHAR)) + strlen(CAST(b AS VARCHAR))"
    statements.append(
        f'CREATE MACRO "||"(a, b) AS system.main."||"(CASE WHEN {both} > {text} THEN {refuse} ELSE a END, b)'
    )
    for f in ("list_resize", "array_resize"):
        k = f"CASE WHEN k > {n} THEN error({_refusal(f, f'{n:,} elements')}) ELSE k END"
        statements.append(f"CREATE MACRO {f}(l, k) AS system.main.{f}(l, {k}), (l, k, v) AS system.main.{f}(l, {k}, v)")
    return statements


def qualified_function(con: Any, statement: str) -> str | None:
    """The first function ``statement`` calls by a qualified name (``system.main.repeat``: past the guards)."""
    import json

    [(serialized,)] = con.execute("SELECT json_serialize_sql(?)", [statement]).fetchall()
    stack = [json.loads(serialized)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class") == "FUNCTION" and (node.get("schema") or node.get("catalog")):
                parts = (node.get("catalog"), node.get("schema"), node.get("function_name"))
                return ".".join(str(p) for p in parts if p)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


# ------------------------------------------------------------------------------ cutting values in the engine


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _children(kind: Any) -> list[tuple[str, Any]]:
    return [(str(name), child) for name, child in kind.children]


class _Cut(NamedTuple):
    value: str  # the value, cut
    flag: str | None  # true where it was cut; None: values of this type are never cut
    size: str  # its original size (-1: not told)
    unit: str  # what the size counts
    shown: str  # what is left of a cut value
    worst: int  # bytes of the cut value at most (about)


def _elements(budget: int) -> tuple[int, int]:
    """How many elements of a list are kept, and each one's budget (an element may take more than its share:
    a list of three names is not cut to four letters each)."""
    return max(1, budget // 64), max(64, budget // 16)


def _cut(expr: str, kind: Any, budget: int, depth: int = 0) -> _Cut:
    """``expr`` of DuckDB type ``kind`` cut inside the engine to about ``budget`` bytes, recursively."""
    kid = str(kind.id)
    if kid in _FIXED:
        return _Cut(expr, None, "", "", "", 16)
    if kid in ("list", "array", "map"):
        n, each = _elements(budget)
        var, shown = f"nbmcp_e{depth}", f"its first {n:,} elements"
        if kid == "map":
            key, value = (child for _, child in _children(kind))
            if str(key.id) in _FIXED and str(value.id) in _FIXED:
                kept = f"map_from_entries(list_slice(map_entries({expr}), 1, {n}))"
                return _Cut(kept, f"(cardinality({expr}) > {n})", f"cardinality({expr})", "entries", shown, 32 * n)
            expr, element = f"map_entries({expr})", None  # cut as a list of {key, value}: keys cut could collide
        else:
            element = dict(_children(kind))["child"]
        if element is None:
            inner = _cut_struct(var, [("key", key), ("value", value)], each, depth)
        else:
            inner = _cut(var, element, each, depth + 1)
        sliced = f"list_slice({expr}, 1, {n})"
        kept = sliced if inner.value == var else f"list_transform({sliced}, lambda {var}: {inner.value})"
        flag = f"len({expr}) > {n}"
        if inner.flag:
            flag += f" OR coalesce(list_bool_or(list_transform({sliced}, lambda {var}: {inner.flag})), false)"
            shown += ", each cut alike"
        return _Cut(kept, f"({flag})", f"len({expr})", "elements", shown, n * inner.worst)
    if kid == "struct" and all(name for name, _ in _children(kind)):
        fields = _children(kind)
        return _cut_struct(expr, fields, max(64, budget // max(1, len(fields))), depth)
    if kid == "blob":
        return _Cut(
            f"{expr}[1:{budget}]", f"(octet_length({expr}) > {budget})", f"octet_length({expr})", "bytes",
            f"its first {budget:,} bytes", budget,
        )  # fmt: skip
    # Text, and as text every other type (union, bit, bignum, variant, unnamed struct, an extension's type).
    text, n = f"CAST({expr} AS VARCHAR)", max(1, budget // 4)
    flag = f"(strlen({text}) > {n} AND length({text}) > {n})"
    return _Cut(f"left({text}, {n})", flag, f"strlen({text})", "bytes", f"its first {n:,} characters", 4 * n)


def _cut_struct(expr: str, fields: list[tuple[str, Any]], budget: int, depth: int) -> _Cut:
    parts, flags, worst = [], [], 0
    for name, kind in fields:
        inner = _cut(f"struct_extract({expr}, {_literal(name)})", kind, budget, depth + 1)
        parts.append(f"{_quoted(name)} := {inner.value}")
        worst += inner.worst
        if inner.flag:
            flags.append(f"coalesce({inner.flag}, false)")
    if not flags:
        return _Cut(expr, None, "", "", "", worst)
    kept = f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({', '.join(parts)}) END"
    return _Cut(kept, f"({' OR '.join(flags)})", "-1", "", f"its fields cut to about {budget:,} bytes each", worst)


# ------------------------------------------------------------------------------ fetching, bounded


@dataclass
class Bounds:
    """What a query may bring back: rows shown, rows saved, and their bytes."""

    limit: int  # rows shown
    save_rows: int  # rows saved (0: no save_as)
    max_result_bytes: int
    save_max_bytes: int


@dataclass
class Fetched:
    """At most ``rows`` rows of a result, its long values cut, and what was cut."""

    table: Any  # pyarrow.Table
    more: bool  # the result has more rows than were kept (past ``rows``, or past the byte bound)
    cut: list[dict[str, Any]] = field(default_factory=list)  # per column: rows, original sizes, how it was cut
    over_bytes: bool = False  # rows were left out to stay within ``max_bytes``


class TooLarge(ValueError):
    """A result over its byte bound, when the bound refuses rather than keeps fewer rows."""


def fetch(con: Any, relation: Any, rows: int, value_bytes: int, max_bytes: int, refuse: bool) -> Fetched:
    """Run ``relation`` (a DuckDB relation on ``con``, not yet run) for at most ``rows`` rows with each value
    cut inside the engine to about ``value_bytes``; stop reading at ``max_bytes`` of Arrow: raise
    :class:`TooLarge` when ``refuse``, else keep the rows read so far."""
    import pyarrow as pa

    names, kinds = list(relation.columns), list(relation.types)
    view = f"nbmcp_result_{uuid.uuid4().hex}"
    columns, sizes, cut_columns = [], [], []
    worst_row = 16
    for i, (name, kind) in enumerate(zip(names, kinds)):  # noqa: B905 (the kernel's Python may be < 3.10)
        cut = _cut(f"nbmcp_q.c{i}", kind, value_bytes)
        columns.append(f"{cut.value} AS {_quoted(name)}")
        worst_row += cut.worst + 16  # and its offsets, validity
        if cut.flag is not None:
            sizes.append(f"CASE WHEN coalesce({cut.flag}, false) THEN {cut.size} END")
            cut_columns.append((name, cut.unit, cut.shown))
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    sql = f"SELECT {', '.join(columns + sizes)} FROM {view} AS nbmcp_q({aliases}) LIMIT {rows + 1}"
    bounded = relation.query(view, sql)
    if (rows + 1) * worst_row <= max_bytes:  # whole, even at its worst: one materialized fetch (the faster way)
        whole = bounded.to_arrow_table()
        schema, batches, reader = whole.schema, whole.to_batches(), None
    else:  # in batches small enough that one at its worst stays within the bound, but not tiny
        reader = bounded.to_arrow_reader(max(1, min(100_000, rows + 1, max_bytes // (2 * worst_row))))
        schema, batches = reader.schema, reader
    kept, total, over = [], 0, False
    for batch in batches:
        total += batch.nbytes
        if total > max_bytes:
            if refuse:
                rows_read = sum(b.num_rows for b in kept) + batch.num_rows
                raise TooLarge(
                    f"the result's first {rows_read:,} rows take more than {human_size(max_bytes)} even with "
                    f"long values cut to about {human_size(value_bytes)}: select fewer columns, or fewer rows (limit)"
                )
            over = True
            break
        kept.append(batch)
    if reader is not None:
        reader.close()
    table = pa.Table.from_batches(kept, schema)
    more = over or table.num_rows > rows
    table = table.slice(0, rows)
    cut = []
    for j, (name, unit, shown) in enumerate(cut_columns):
        found = [(r, s) for r, s in enumerate(table.column(len(names) + j).to_pylist()) if s is not None]
        if found:
            cut.append({"column": name, "rows": [r for r, _ in found], "sizes": [s for _, s in found], "unit": unit})
            cut[-1]["shown"] = shown
    return Fetched(table.select(list(range(len(names)))), more, cut, over)


def cut_notes(cut: list[dict[str, Any]], what: str = "shown") -> list[str]:
    """Notes saying which values were cut and how to read the rest."""
    notes = []
    for entry in cut:
        name, rows, sizes, unit = entry["column"], entry["rows"], entry["sizes"], entry["unit"]
        shown = zip(rows[:5], sizes)  # noqa: B905
        where = ", ".join(f"row {r}" + (f" ({s:,} {unit})" if unit and s >= 0 else "") for r, s in shown)
        where += f" and {len(rows) - 5:,} more" if len(rows) > 5 else ""
        how = {
            "elements": f"list_slice({name}, start, end) or len({name})",
            "entries": f"map_extract({name}, key) or cardinality({name})",
            "bytes": f"substr({name}, start, length) or strlen({name})",
        }.get(unit, f"the fields of {name} you need")
        notes.append(
            f"{len(rows):,} value(s) of {name} {what} cut to {entry.get('shown', 'a part')} ({where}); "
            f"read a part with {how} in the SQL"
        )
    return notes


# ------------------------------------------------------------------------------ integers in JSON


def _big(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -EXACT_INTEGERS < value < EXACT_INTEGERS
    if isinstance(value, decimal.Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        return not -EXACT_INTEGERS < value < EXACT_INTEGERS
    if isinstance(value, dict):
        return any(_big(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_big(v) for v in value)
    return False


def big_integer_columns(table: Any) -> list[str]:
    """Columns of ``table`` (a small pyarrow.Table) holding integers that JSON numbers do not hold exactly
    (|n| >= 2**53): they are sent as strings."""
    columns = zip(table.column_names, table.columns)  # noqa: B905
    return [name for name, column in columns if any(map(_big, column.to_pylist()))]


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value) if _big(value) else value
    if isinstance(value, decimal.Decimal):
        whole = value.is_finite() and value.as_tuple().exponent == 0
        return int(value) if whole and not _big(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def records(table: Any) -> list[dict[str, Any]]:
    """JSON-ready rows of a small pyarrow.Table in a kernel without nbmcp (nbmcp's own: ``frames.page``):
    integers beyond 2**53 as strings; the rest is made JSON by ``default=str``."""
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]
