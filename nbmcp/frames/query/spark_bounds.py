"""Bounds of a Spark ``query`` result before it leaves Spark: rows, long values and bytes, as for DuckDB.

Spark's ``toArrow()`` brings a result whole into the kernel: ``SELECT repeat('x', 100000000) FROM events`` would
be 100 MB of Arrow, then Python, then JSON. So the checked plan's DataFrame is projected, with the DataFrame
API on its analysed schema (never by re-parsing text), to each value cut inside Spark: text to its first
characters (``substring``), binary to its first bytes, arrays to their first elements (``slice``), maps and
structs alike, recursively; a column per cuttable column says which values were cut and how big they were.
The rows are limited, and a running total of each row's size (its text form, counted in Spark) keeps the
rows within the byte bound before anything is converted: a result past it is refused (rows shown) or kept
short (save_as). The policy, the ``cut`` entries and their notes are :mod:`nbmcp.frames.query.sql_bounds`'s.

Spark's amplifiers (``repeat``, ``lpad``, ``sequence``, ``array_repeat`` with huge counts) build their values
in the JVM, a process of its own: the driver's memory (``spark.driver.memory``) bounds them there, and a JVM
that fails answers the query with Spark's error; the kernel gets only the cut values.

Only the standard library is imported here at import time: ``nbmcp serve`` sends this source to the kernel
with :mod:`nbmcp.frames.query.sql`'s, as the module ``<engine>_spark_bounds`` (``sql.install_siblings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SparkBounds", "first_rows"]

# In a kernel that got the engine from nbmcp serve as sources: its modules by name (sql.install_siblings).
kernel_modules: dict[str, Any] | None = None


def _sibling(name: str) -> Any:
    """Another module of the query engine (``nbmcp.frames.query.<name>``, ``nbmcp.frames.kinds``), or its copy
    sent to the kernel."""
    if kernel_modules is not None:
        return kernel_modules[name]
    import importlib

    return importlib.import_module(f"nbmcp.frames.{name}" if name == "kinds" else f"nbmcp.frames.query.{name}")


# Spark types whose values have a fixed, small size; every other type is cut (unknown ones as text).
_FIXED = {
    "BooleanType", "ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType",
    "DateType", "TimestampType", "TimestampNTZType", "TimeType", "NullType", "DayTimeIntervalType",
    "YearMonthIntervalType", "CalendarIntervalType",
}  # fmt: skip


@dataclass
class _Cut:
    value: Any  # the column, cut
    flag: Any  # a boolean column, true where it was cut; None: values of this type are never cut
    size: Any  # its original size
    unit: str
    shown: str
    worst: int  # bytes of the cut value at most (about)


def _size(n: float) -> str:
    return _sibling("sql_bounds").human_size(n)


def _elements(budget: int) -> tuple[int, int]:
    """How many elements of a list are kept, and each one's budget (sql_bounds' shares)."""
    return max(1, budget // 64), max(64, budget // 16)


def _cut(col: Any, kind: Any, budget: int) -> _Cut:
    """``col`` of Spark type ``kind`` cut inside Spark to about ``budget`` bytes, recursively."""
    from pyspark.sql import functions as F

    name = type(kind).__name__
    if name in _FIXED:
        return _Cut(col, None, None, "", "", 16)
    if name in ("ArrayType", "MapType"):
        n, each = _elements(budget)
        shown = f"its first {n:,} elements"
        if name == "MapType":
            if type(kind.keyType).__name__ in _FIXED and type(kind.valueType).__name__ in _FIXED:
                kept = F.map_from_entries(F.slice(F.map_entries(col), 1, n))
                return _Cut(kept, F.size(col) > n, F.size(col), "entries", shown, 32 * n)
            # cut as a list of {key, value}: keys cut could collide
            import pyspark.sql.types as T

            entry = T.StructType([T.StructField("key", kind.keyType), T.StructField("value", kind.valueType)])
            col, element, each = F.map_entries(col), entry, 2 * each  # each of key and value gets a whole share
        else:
            element = kind.elementType
        sliced = F.slice(col, 1, n)
        probe = _cut(F.lit(None).cast(element), element, each)  # whether elements of this type are cut at all
        if probe.flag is None:
            return _Cut(sliced, F.size(col) > n, F.size(col), "elements", shown, n * probe.worst)
        kept = F.transform(sliced, lambda e: _cut(e, element, each).value)
        inner = F.exists(sliced, lambda e: F.coalesce(_cut(e, element, each).flag, F.lit(False)))
        flag = (F.size(col) > n) | inner
        return _Cut(kept, flag, F.size(col), "elements", shown + ", each cut alike", n * probe.worst)
    if name == "StructType" and kind.fields:
        share = max(64, budget // len(kind.fields))
        parts = [(f.name, _cut(col.getField(f.name), f.dataType, share)) for f in kind.fields]
        flags = [F.coalesce(c.flag, F.lit(False)) for _, c in parts if c.flag is not None]
        if not flags:
            return _Cut(col, None, None, "", "", sum(c.worst for _, c in parts))
        kept = F.when(col.isNull(), F.lit(None)).otherwise(F.struct(*[c.value.alias(f) for f, c in parts]))
        flag = flags[0]
        for more in flags[1:]:
            flag = flag | more
        worst = sum(c.worst for _, c in parts)
        return _Cut(kept, flag, F.lit(-1), "", f"its fields cut to about {share:,} bytes each", worst)
    if name == "BinaryType":
        return _Cut(
            F.substring(col, 1, budget), F.octet_length(col) > budget, F.octet_length(col), "bytes",
            f"its first {budget:,} bytes", budget,
        )  # fmt: skip
    # Text, and as text every other type (variant, geometry, a user-defined type).
    text, n = col.cast("string"), max(1, budget // 4)
    flag = (F.octet_length(text) > n) & (F.length(text) > n)
    return _Cut(F.substring(text, 1, n), flag, F.octet_length(text), "bytes", f"its first {n:,} characters", 4 * n)


# Spark builds these in its optimizer when their arguments are constants (constant folding): on the driver, before
# any job starts, where the query's time limit (which cancels jobs) cannot stop it. repeat('x', 2000000000) kept
# a 512 MB driver busy for minutes. A constant count past DuckDB's guards is refused before Spark optimizes.
_AMPLIFIERS = {  # expression class -> (function, index of its count argument, elements rather than bytes)
    "StringRepeat": ("repeat", 1, False),
    "StringLPad": ("lpad", 1, False),
    "StringRPad": ("rpad", 1, False),
    "BinaryLPad": ("lpad", 1, False),
    "BinaryRPad": ("rpad", 1, False),
    "StringSpace": ("space", 0, False),
    "ArrayRepeat": ("array_repeat", 1, True),
}
_AMPLIFIER_WORDS = ("repeat", "pad", "space", "sequence")


def _refuse_amplifiers(analysed: Any) -> None:
    """Refuse constant counts of value-building functions past ``sql_bounds``' generated-value bounds."""
    text = str(analysed.toString()).lower()
    if not any(word in text for word in _AMPLIFIER_WORDS):  # one JVM call for the common case
        return
    bounds = _sibling("sql_bounds")
    limits = {False: bounds.GENERATED_TEXT_BYTES, True: bounds.GENERATED_ELEMENTS}
    plans, expressions = [analysed], []
    while plans:
        node = plans.pop()
        plans += [*_items(node.children()), *_items(node.innerChildren())]
        expressions += _items(node.expressions())
    found = []  # every expression after its parent: checked in reverse, so a count is evaluated only once what
    while expressions:  # it contains has passed (repeat('x', length(repeat('y', 2000000000))) builds nothing)
        expression = expressions.pop()
        expressions += _items(expression.children())
        found.append(expression)
    for expression in reversed(found):
        simple = expression.getClass().getSimpleName()
        if simple == "Sequence":
            start, stop = (expression.children().apply(i) for i in (0, 1))
            if start.foldable() and stop.foldable():
                first, last = start.eval(None), stop.eval(None)
                if isinstance(first, int) and isinstance(last, int) and abs(last - first) > limits[True]:
                    _refuse("sequence", f"{limits[True]:,} elements")
            continue
        if simple not in _AMPLIFIERS:
            continue
        function, index, elements = _AMPLIFIERS[simple]
        count = expression.children().apply(index)
        value = count.eval(None) if count.foldable() else None
        if isinstance(value, int) and value > limits[elements]:
            _refuse(function, f"{limits[elements]:,} elements" if elements else _size(limits[elements]))


def _refuse(function: str, what: str) -> None:
    raise _sibling("spark_sql").SparkRefused(
        f"{function}() would build a value of more than {what}; query builds at most that much in one value: "
        "build less, or aggregate instead"
    )


def _items(seq: Any) -> list[Any]:
    items = seq.toIndexedSeq()
    return [items.apply(i) for i in range(items.length())]


@dataclass(frozen=True)
class SparkBounds:
    """What a Spark query may bring back: each value cut to about ``value_bytes``, at most ``max_bytes`` in all
    (refused past it when ``refuse``, else fewer rows kept)."""

    value_bytes: int
    max_bytes: int
    refuse: bool = True

    @classmethod
    def of(cls, save: bool, max_result_bytes: int, save_max_bytes: int) -> SparkBounds:
        """The rows shown (values cut to show, refused past ``max_result_bytes``), or those saved (cut to save,
        kept within ``save_max_bytes``)."""
        bounds = _sibling("sql_bounds")
        if save:
            return cls(bounds.SAVED_VALUE_BYTES, save_max_bytes, refuse=False)
        return cls(bounds.SHOWN_VALUE_BYTES, max_result_bytes)

    def fetch(self, frame: Any, rows: int, analysed: Any) -> Any:
        """At most ``rows`` rows of ``frame`` (a pyspark DataFrame, not yet run; ``analysed``: its analysed plan,
        py4j), bounded inside Spark, as a ``sql_bounds.Fetched``; raises ``spark_sql.SparkRefused`` for a constant
        count past the generated-value bounds, and past the byte bound when ``refuse``."""
        import pyarrow as pa
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        bounds = _sibling("sql_bounds")
        _refuse_amplifiers(analysed)
        names = list(frame.columns)
        source = frame.toDF(*[f"c{i}" for i in range(len(names))])  # unique names, whatever the query's were
        columns, sizes, cut_columns, worst_row = [], [], [], 16
        for i, field in enumerate(source.schema.fields):
            cut = _cut(F.col(f"c{i}"), field.dataType, self.value_bytes)
            columns.append(cut.value.alias(f"v{i}"))
            worst_row += cut.worst + 16
            if cut.flag is not None:
                sizes.append(F.when(F.coalesce(cut.flag, F.lit(False)), cut.size).alias(f"s{len(sizes)}"))
                cut_columns.append((names[i], cut.unit, cut.shown))
        bounded = source.select(*columns, *sizes).limit(rows + 1)
        if (rows + 1) * worst_row > self.max_bytes:
            # Each row's size as text, summed in row order inside Spark: rows past the bound stay there.
            order = Window.orderBy("nbmcp_row").rowsBetween(Window.unboundedPreceding, Window.currentRow)
            each = F.octet_length(F.struct(*[F.col(f"v{i}") for i in range(len(names))]).cast("string")) + 16
            bounded = (
                bounded.withColumn("nbmcp_row", F.monotonically_increasing_id())
                .withColumn("nbmcp_through", F.sum(each).over(order))
                .where(F.col("nbmcp_through") - each <= self.max_bytes)
                .drop("nbmcp_row")
            )
        table = bounded.toArrow()
        over = False
        if "nbmcp_through" in table.column_names:
            through = table.column("nbmcp_through").to_pylist()
            table = table.drop_columns(["nbmcp_through"])
            over = bool(through) and through[-1] > self.max_bytes  # the first row past the bound came too
            if over and self.refuse:
                raise _sibling("spark_sql").SparkRefused(
                    f"the result's first {len(through):,} rows take more than {_size(self.max_bytes)} even with "
                    f"long values cut to about {_size(self.value_bytes)}: select fewer columns, or fewer rows "
                    "(limit); in a notebook the bound is c.NbMCP.max_resource_bytes"
                )
            table = table.slice(0, table.num_rows - 1) if over else table
        more = over or table.num_rows > rows
        table = table.slice(0, rows)
        cut = []
        for j, (name, unit, shown) in enumerate(cut_columns):
            found = [(r, s) for r, s in enumerate(table.column(len(names) + j).to_pylist()) if s is not None]
            if found:
                cut.append({"column": name, "rows": [r for r, _ in found], "sizes": [s for _, s in found]})
                cut[-1].update(unit=unit, shown=shown)
        kept = pa.Table.from_arrays(table.columns[: len(names)], names=names)
        return bounds.Fetched(kept, more, cut, over)


def first_rows(fetched: Any, limit: int, max_bytes: int) -> tuple[Any, list[dict[str, Any]]]:
    """The first ``limit`` rows of a result fetched for save_as, to show, and what was cut in them; refused
    (``sql.QueryRefused``) past ``max_bytes``: saved values are cut less than shown ones."""
    shown = fetched.table.slice(0, limit)
    if shown.nbytes > max_bytes:
        raise _sibling("sql").QueryRefused(
            f"the result's first {shown.num_rows:,} rows take more than {_size(max_bytes)} with values cut to be "
            "saved: select fewer columns, or fewer rows (limit); the saved variable has them all"
        )
    cut = []
    for entry in fetched.cut:
        rows = [r for r in entry["rows"] if r < limit]  # ascending
        if rows:
            cut.append({**entry, "rows": rows, "sizes": entry["sizes"][: len(rows)]})
    return shown, cut
