"""Which frames nbmcp knows (pandas, polars, pyarrow) and how to reach their rows cheaply.

Nothing here imports pandas or polars: a frame's library is already loaded when a frame exists, and the
checks go through ``sys.modules`` (narwhals' ``dependencies`` helpers).

pandas specifics: a non-default index (anything but an unnamed ``RangeIndex(0, n)``) carries data
(``groupby`` keys, ``value_counts`` labels), so it becomes leading column(s). Column names are made unique
strings (MultiIndex columns are joined with ``_``, duplicates get ``.1``, ``.2`` suffixes), the same names
everywhere: in schemas, pages, markdown and Arrow exports.
"""

from __future__ import annotations

from typing import Any

from narwhals.dependencies import (
    get_pandas,
    get_pyarrow,
    is_pandas_dataframe,
    is_pandas_series,
    is_polars_dataframe,
    is_polars_series,
    is_pyarrow_chunked_array,
    is_pyarrow_table,
)

from .kinds import Backend, backend_of

EAGER_ADAPTER = "eager.EagerSource"  # the adapter of the frames held in memory (pandas, polars, pyarrow Table)

__all__ = [
    "EAGER_ADAPTER",
    "as_frame",
    "column_names",
    "frame_kind",
    "index_column_count",
    "is_frame",
    "is_series",
    "native_slice",
    "prepared_frame",
    "require_frame",
    "row_count",
    "unique_names",
]


def _eager(obj: Any) -> Backend | None:
    """``obj``'s row of :data:`.kinds.BACKENDS` when it is an eager frame (held in memory, paged natively)."""
    backend = backend_of(obj)
    return backend if backend is not None and backend.adapter == EAGER_ADAPTER else None


def is_frame(obj: Any) -> bool:
    """True for an eager frame of :data:`.kinds.BACKENDS`: a pandas or polars DataFrame or a pyarrow Table. Imports
    nothing."""
    return _eager(obj) is not None


def is_series(obj: Any) -> bool:
    """True for a pandas or polars Series or a pyarrow (Chunked)Array. Imports nothing."""
    if is_pandas_series(obj) or is_polars_series(obj) or is_pyarrow_chunked_array(obj):
        return True
    pa = get_pyarrow()
    return pa is not None and isinstance(obj, pa.Array)


def as_frame(obj: Any) -> Any:
    """``obj`` itself if it is a frame; a one-column frame if it is a series; else ``None``."""
    if is_frame(obj):
        return obj
    if is_pandas_series(obj):
        return obj.to_frame(name="value" if obj.name is None else obj.name)
    if is_polars_series(obj):
        return obj.to_frame(obj.name or "value")
    if is_series(obj):
        pa = get_pyarrow()
        return pa.table({"value": obj})
    return None


def frame_kind(obj: Any) -> str:
    """``"pandas.DataFrame"``, ``"polars.DataFrame"`` or ``"pyarrow.Table"``; ``TypeError`` for anything else."""
    backend = _eager(obj)
    if backend is not None:
        return backend.kind
    raise TypeError(f"not a dataframe: {type(obj).__module__}.{type(obj).__qualname__}")


def require_frame(obj: Any) -> None:
    """Raise ``TypeError`` naming the type unless ``obj`` is a frame."""
    if not is_frame(obj):
        frame_kind(obj)


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats renamed ``name.1``, ``name.2``, … (skipping suffixes already taken)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        n = seen[name]
        while True:
            n += 1
            candidate = f"{name}.{n}"
            if candidate not in taken:
                break
        seen[name] = n
        taken.add(candidate)
        out.append(candidate)
    return out


def _pd_has_data_index(df: Any) -> bool:
    pd = get_pandas()
    idx = df.index
    default = isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None
    return not default


def _label(value: Any) -> str:
    if isinstance(value, tuple):
        return "_".join(str(p) for p in value if p is not None and str(p) != "")
    return str(value)


def _pd_names(df: Any) -> tuple[list[str], list[str]]:
    """(index column names, data column names), unique strings, cheap (no data touched)."""
    index_names: list[str] = []
    if _pd_has_data_index(df):
        levels = list(df.index.names)
        for i, name in enumerate(levels):
            if name is None:
                name = "index" if len(levels) == 1 else f"level_{i}"
            index_names.append(_label(name))
    data_names = [_label(c) for c in df.columns]
    both = unique_names(index_names + data_names)
    return both[: len(index_names)], both[len(index_names) :]


def index_column_count(obj: Any) -> int:
    """How many leading columns of a pandas frame's names are its index (0 for other frames)."""
    return len(_pd_names(obj)[0]) if is_pandas_dataframe(obj) else 0


def _pd_prepare(df: Any, names: tuple[list[str], list[str]]) -> Any:
    """``df`` (a slice, or the whole frame for export) with the index as columns and unique str names."""
    index_names, data_names = names
    # positional names first: set_axis with the final names could collide with index level names
    out = df.set_axis(list(range(df.shape[1])), axis=1)
    if index_names:
        out = out.reset_index(names=[f"__nbmcp_index_{i}" for i in range(len(index_names))])
    return out.set_axis(index_names + data_names, axis=1)


def _pa_prepare(table: Any) -> Any:
    names = unique_names([str(n) for n in table.column_names])
    return table if names == table.column_names else table.rename_columns(names)


def column_names(obj: Any) -> list[str]:
    """The frame's column names as nbmcp shows them (pandas index first, unique strings)."""
    if is_pandas_dataframe(obj):
        index_names, data_names = _pd_names(obj)
        return index_names + data_names
    if is_pyarrow_table(obj):
        return unique_names([str(n) for n in obj.column_names])
    return list(obj.columns)


def row_count(obj: Any) -> int:
    """Number of rows, without touching the data."""
    if is_pyarrow_table(obj):
        return obj.num_rows
    if is_polars_dataframe(obj):
        return obj.height
    return len(obj)


def native_slice(obj: Any, offset: int, limit: int) -> Any:
    """Rows ``offset .. offset+limit`` as a frame of the same library, prepared (unique string names, pandas
    index as columns). O(limit): the native frame is sliced before anything is converted."""
    if is_pandas_dataframe(obj):
        return _pd_prepare(obj.iloc[offset : offset + limit], _pd_names(obj))
    if is_pyarrow_table(obj):
        return _pa_prepare(obj.slice(offset, limit))
    return obj.slice(offset, limit)


def prepared_frame(obj: Any) -> Any:
    """The whole frame, prepared like :func:`native_slice` (for exports and schemas)."""
    if is_pandas_dataframe(obj):
        return _pd_prepare(obj, _pd_names(obj))
    if is_pyarrow_table(obj):
        return _pa_prepare(obj)
    return obj
