"""What a frame is (shape, schema, memory, summary) and one page of its rows as JSON-safe records.

A page costs O(page), not O(frame): the native frame is sliced first (``iloc`` / zero-copy slices) and
only the slice is converted to Python values. :func:`shape` stays the native ``df.shape`` (a pandas index
is not counted), while :func:`schema` and :func:`page` show a pandas data index as leading column(s)
flagged ``"index": True``.
"""

from __future__ import annotations

import operator
from typing import Any

import narwhals as nw
from narwhals.dependencies import is_pandas_dataframe, is_polars_dataframe, is_pyarrow_table

from .backends import (
    column_names,
    frame_kind,
    index_column_count,
    native_slice,
    prepared_frame,
    require_frame,
    row_count,
)
from .jsonable import to_jsonable

__all__ = [
    "MAX_PAGE_ROWS",
    "as_index",
    "check_columns",
    "memory_bytes",
    "name_list",
    "page",
    "page_bounds",
    "schema",
    "shape",
    "summary",
]

MAX_PAGE_ROWS = 1000
_SCHEMA_SAMPLE_ROWS = 100
_MAX_NAMES_IN_ERROR = 50


def shape(obj: Any) -> tuple[int, int]:
    """(rows, columns) as the library reports it (pandas: ``df.shape``, index not counted)."""
    require_frame(obj)
    if is_pyarrow_table(obj):
        return (obj.num_rows, obj.num_columns)
    rows, cols = obj.shape
    return (int(rows), int(cols))


def schema(obj: Any) -> list[dict[str, Any]]:
    """``[{"name", "dtype", "native_dtype"}, ...]``; dtypes in narwhals' vocabulary (``Int64``,
    ``String``, ``Datetime(...)``), ``native_dtype`` in the library's. pandas index columns come first
    with ``"index": True``."""
    require_frame(obj)
    if is_pandas_dataframe(obj):
        # a sample is enough for pandas' dtypes and avoids preparing (copying) the whole frame
        sample = native_slice(obj, 0, _SCHEMA_SAMPLE_ROWS)
        native = [str(t) for t in sample.dtypes]
    else:
        sample = prepared_frame(obj)
        types = sample.schema.types if is_pyarrow_table(obj) else sample.dtypes
        native = [str(t) for t in types]
    n_index = index_column_count(obj)
    nw_schema = nw.from_native(sample, eager_only=True).schema
    out = []
    for i, (name, dtype) in enumerate(nw_schema.items()):
        entry: dict[str, Any] = {"name": name, "dtype": str(dtype), "native_dtype": native[i]}
        if i < n_index:
            entry["index"] = True
        out.append(entry)
    return out


def memory_bytes(obj: Any) -> int | None:
    """Approximate memory footprint (pandas: shallow ``memory_usage``; polars: ``estimated_size``;
    arrow: ``nbytes``), or ``None`` if the library cannot tell."""
    require_frame(obj)
    try:
        if is_pandas_dataframe(obj):
            return int(obj.memory_usage(index=True, deep=False).sum())
        if is_polars_dataframe(obj):
            return int(obj.estimated_size())
        return int(obj.nbytes)
    except Exception:
        return None


def as_index(value: Any, arg: str) -> int:
    """``value`` as an int index (bools refused); ``ValueError`` naming ``arg`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{arg} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{arg} must be an integer, got {type(value).__name__} {value!r}") from None


def name_list(names: list[str]) -> str:
    """Names for an error message, the first few and how many more."""
    shown = ", ".join(repr(n) for n in names[:_MAX_NAMES_IN_ERROR])
    if len(names) > _MAX_NAMES_IN_ERROR:
        shown += f", ... ({len(names) - _MAX_NAMES_IN_ERROR} more)"
    return f"[{shown}]"


def page_bounds(offset: Any, limit: Any) -> tuple[int, int]:
    """``(offset, limit)`` checked: integers, ``offset >= 0``, ``1 <= limit <= MAX_PAGE_ROWS``."""
    offset = as_index(offset, "offset")
    limit = as_index(limit, "limit")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_ROWS:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_ROWS}, got {limit}")
    return offset, limit


def check_columns(columns: Any, names: list[str]) -> list[str] | None:
    """``columns`` as a list of known names (None for all); ``ValueError`` listing the valid ones."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    try:
        columns = list(columns)
    except TypeError:
        raise ValueError(f"columns must be a list of column names or None; valid columns: {name_list(names)}") from None
    if not columns:
        raise ValueError(f"columns must not be empty (use None for all); valid columns: {name_list(names)}")
    known = set(names)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"columns: unknown column(s) {unknown!r}; valid columns: {name_list(names)}")
    return columns


def page(obj: Any, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows ``offset .. offset+limit`` as JSON-safe records (``[{column: value}, ...]``).

    Slices the native frame first, so the cost is O(limit) whatever the frame's length. An ``offset``
    past the end gives ``[]``. Bad arguments raise ``ValueError`` naming the argument.
    """
    require_frame(obj)
    offset, limit = page_bounds(offset, limit)
    selected = check_columns(columns, column_names(obj))
    if offset >= row_count(obj):
        return []
    frame = nw.from_native(native_slice(obj, offset, limit), eager_only=True)
    if selected is not None:
        frame = frame.select(selected)
    return [{k: to_jsonable(v) for k, v in row.items()} for row in frame.rows(named=True)]


def summary(obj: Any) -> dict[str, Any]:
    """``{"kind", "shape": [r, c], "columns": schema, "memory_bytes", "head": records (≤ 10)}``."""
    rows, cols = shape(obj)
    return {
        "kind": frame_kind(obj),
        "shape": [rows, cols],
        "columns": schema(obj),
        "memory_bytes": memory_bytes(obj),
        "head": page(obj, 0, 10) if rows else [],
    }
