"""Dataframes (pandas, polars, pyarrow) through narwhals: schema, shape, pages, fingerprints, Arrow export.

Nothing here imports pandas or polars: a frame's library is already loaded when a frame exists, and the
checks go through ``sys.modules`` (narwhals' ``dependencies`` helpers). pyarrow is imported only when
Arrow data is produced.

A page costs O(page), not O(frame): the native frame is sliced first (``iloc`` / zero-copy slices) and
only the slice is converted to Python values.

pandas specifics: a non-default index (anything but an unnamed ``RangeIndex(0, n)``) carries data
(``groupby`` keys, ``value_counts`` labels), so it is shown as leading column(s) flagged ``"index": True``
in :func:`schema` and included in :func:`page` records. Column names are made unique strings (MultiIndex
columns are joined with ``_``, duplicates get ``.1``, ``.2`` suffixes), the same names everywhere.
:func:`shape` stays the native ``df.shape``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import json
import math
import operator
import pickle
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import narwhals as nw
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

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_PAGE_ROWS",
    "as_frame",
    "fingerprint",
    "frame_kind",
    "head_markdown",
    "is_frame",
    "is_series",
    "markdown_table",
    "memory_bytes",
    "page",
    "schema",
    "shape",
    "summary",
    "to_arrow_ipc",
    "to_arrow_ipc_base64",
    "to_arrow_table",
    "to_jsonable",
    "unique_names",
]

MAX_PAGE_ROWS = 1000
MAX_CELL_CHARS = 80
_SCHEMA_SAMPLE_ROWS = 100
_MAX_NAMES_IN_ERROR = 50
_MAX_DEPTH = 20
_MAX_OPAQUE_CHARS = 200


# --------------------------------------------------------------------------------------------- kinds


def is_frame(obj: Any) -> bool:
    """True for a pandas or polars DataFrame or a pyarrow Table. Imports nothing."""
    return is_pandas_dataframe(obj) or is_polars_dataframe(obj) or is_pyarrow_table(obj)


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
    """``"pandas.DataFrame"``, ``"polars.DataFrame"`` or ``"pyarrow.Table"``."""
    if is_pandas_dataframe(obj):
        return "pandas.DataFrame"
    if is_polars_dataframe(obj):
        return "polars.DataFrame"
    if is_pyarrow_table(obj):
        return "pyarrow.Table"
    raise TypeError(f"not a dataframe: {type(obj).__module__}.{type(obj).__qualname__}")


def _check(obj: Any) -> None:
    if not is_frame(obj):
        frame_kind(obj)  # raises TypeError


# ------------------------------------------------------------------------------------ column names


def unique_names(names: list[str]) -> list[str]:
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


def _pd_prepare(df: Any, names: tuple[list[str], list[str]]) -> Any:
    """``df`` (a slice, or the whole frame for export) with the index as columns and unique str names."""
    index_names, data_names = names
    out = df.set_axis(list(range(df.shape[1])), axis=1)
    if index_names:
        out = out.reset_index(names=[f"__nbmcp_index_{i}" for i in range(len(index_names))])
    return out.set_axis(index_names + data_names, axis=1)


def _pa_prepare(table: Any) -> Any:
    names = unique_names([str(n) for n in table.column_names])
    return table if names == table.column_names else table.rename_columns(names)


def _names(obj: Any) -> list[str]:
    if is_pandas_dataframe(obj):
        index_names, data_names = _pd_names(obj)
        return index_names + data_names
    if is_pyarrow_table(obj):
        return unique_names([str(n) for n in obj.column_names])
    return list(obj.columns)


def _nrows(obj: Any) -> int:
    if is_pyarrow_table(obj):
        return obj.num_rows
    if is_polars_dataframe(obj):
        return obj.height
    return len(obj)


def _native_slice(obj: Any, offset: int, limit: int) -> Any:
    """A slice of the frame, prepared (unique string names, pandas index as columns). O(limit)."""
    if is_pandas_dataframe(obj):
        return _pd_prepare(obj.iloc[offset : offset + limit], _pd_names(obj))
    if is_pyarrow_table(obj):
        return _pa_prepare(obj.slice(offset, limit))
    return obj.slice(offset, limit)


def _prepared_whole(obj: Any) -> Any:
    if is_pandas_dataframe(obj):
        return _pd_prepare(obj, _pd_names(obj))
    if is_pyarrow_table(obj):
        return _pa_prepare(obj)
    return obj


# ----------------------------------------------------------------------------------- basic facts


def shape(obj: Any) -> tuple[int, int]:
    """(rows, columns) as the library reports it (pandas: ``df.shape``, index not counted)."""
    _check(obj)
    if is_pyarrow_table(obj):
        return (obj.num_rows, obj.num_columns)
    rows, cols = obj.shape
    return (int(rows), int(cols))


def schema(obj: Any) -> list[dict[str, Any]]:
    """``[{"name", "dtype", "native_dtype"}, ...]``; dtypes in narwhals' vocabulary (``Int64``,
    ``String``, ``Datetime(...)``), ``native_dtype`` in the library's. pandas index columns come first
    with ``"index": True``."""
    _check(obj)
    if is_pandas_dataframe(obj):
        sample = _native_slice(obj, 0, _SCHEMA_SAMPLE_ROWS)
        n_index = len(_pd_names(obj)[0])
        native = [str(t) for t in sample.dtypes]
    else:
        sample = _prepared_whole(obj)
        n_index = 0
        types = sample.schema.types if is_pyarrow_table(obj) else sample.dtypes
        native = [str(t) for t in types]
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
    _check(obj)
    try:
        if is_pandas_dataframe(obj):
            return int(obj.memory_usage(index=True, deep=False).sum())
        if is_polars_dataframe(obj):
            return int(obj.estimated_size())
        return int(obj.nbytes)
    except Exception:
        return None


# ----------------------------------------------------------------------------------------- values


def _opaque(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    if len(text) > _MAX_OPAQUE_CHARS:
        text = text[: _MAX_OPAQUE_CHARS - 1] + "…"
    return text


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: datetimes -> ISO strings, NaN/NaT/NA -> None, ±inf -> "inf"/"-inf",
    numpy scalars/arrays -> Python, Decimal/UUID -> str, bytes -> bounded repr, mappings/sequences
    recursively (keys become strings), anything else -> bounded repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(value)
    tname = type(value).__name__
    if tname in ("NaTType", "NAType"):
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _opaque(bytes(value))
    if _depth >= _MAX_DEPTH:
        return _opaque(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    module = type(value).__module__ or ""
    if module == "numpy" or module.startswith("numpy."):
        if tname in ("datetime64", "timedelta64"):
            return None if str(value) in ("NaT", "nat") else str(value)
        if tname == "ndarray":
            return to_jsonable(value.tolist(), _depth + 1)
        item = getattr(value, "item", None)
        if callable(item):
            try:
                return to_jsonable(item(), _depth + 1)
            except Exception:
                return _opaque(value)
    if is_series(value):  # nested pandas/polars/arrow list cells
        try:
            return to_jsonable(value.to_list(), _depth + 1)
        except Exception:
            return _opaque(value)
    return _opaque(value)


# ------------------------------------------------------------------------------------------ pages


def _as_index(value: Any, arg: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{arg} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{arg} must be an integer, got {type(value).__name__} {value!r}") from None


def _name_list(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_NAMES_IN_ERROR])
    if len(names) > _MAX_NAMES_IN_ERROR:
        shown += f", ... ({len(names) - _MAX_NAMES_IN_ERROR} more)"
    return f"[{shown}]"


def _check_columns(columns: Any, names: list[str]) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    try:
        columns = list(columns)
    except TypeError:
        raise ValueError(
            f"columns must be a list of column names or None; valid columns: {_name_list(names)}"
        ) from None
    if not columns:
        raise ValueError(f"columns must not be empty (use None for all); valid columns: {_name_list(names)}")
    known = set(names)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"columns: unknown column(s) {unknown!r}; valid columns: {_name_list(names)}")
    return columns


def page(obj: Any, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows ``offset .. offset+limit`` as JSON-safe records (``[{column: value}, ...]``).

    Slices the native frame first, so the cost is O(limit) whatever the frame's length. An ``offset``
    past the end gives ``[]``. Bad arguments raise ``ValueError`` naming the argument.
    """
    _check(obj)
    offset = _as_index(offset, "offset")
    limit = _as_index(limit, "limit")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE_ROWS:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_ROWS}, got {limit}")
    selected = _check_columns(columns, _names(obj))
    if offset >= _nrows(obj):
        return []
    frame = nw.from_native(_native_slice(obj, offset, limit), eager_only=True)
    if selected is not None:
        frame = frame.select(selected)
    return [{k: to_jsonable(v) for k, v in row.items()} for row in frame.rows(named=True)]


# --------------------------------------------------------------------------------------- markdown


def _cell(value: Any, max_chars: int = MAX_CELL_CHARS) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return (
        text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    )


def markdown_table(records: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub markdown table of ``records`` in ``columns`` order. Cells: ``|`` and newlines escaped,
    longer than ~80 characters truncated with ``…``; missing values are empty."""
    header = "| " + " | ".join(_cell(c) for c in columns) + " |"
    rule = "|" + "|".join(" --- " for _ in columns) + "|"
    lines = [header, rule]
    for record in records:
        lines.append("| " + " | ".join(_cell(record.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def head_markdown(obj: Any, n: int = 10) -> str:
    """The first ``n`` rows as a markdown table (header only for an empty frame)."""
    names = _names(obj)
    records = page(obj, 0, n) if _nrows(obj) else []
    return markdown_table(records, names)


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


# ------------------------------------------------------------------------------------ fingerprint


def _pd_fingerprint(df: Any, h: Any) -> None:
    pd = get_pandas()
    hash_obj = pd.util.hash_pandas_object
    h.update(hash_obj(df.index, categorize=True).to_numpy().tobytes())
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        try:
            hashed = hash_obj(col, index=False)
        except TypeError:  # unhashable cells (lists, dicts): hash their text
            hashed = hash_obj(col.map(repr), index=False)
        h.update(hashed.to_numpy().tobytes())


def fingerprint(obj: Any) -> str:
    """A hex digest of the frame's content (values, names, dtypes, pandas index). Changes when the
    data changes. O(frame) (~100 ms per million rows); meant for subscribed objects only."""
    _check(obj)
    h = hashlib.blake2b(digest_size=16)
    h.update(frame_kind(obj).encode())
    h.update(repr(shape(obj)).encode())
    if is_pandas_dataframe(obj):
        h.update(repr([(str(c), str(t)) for c, t in zip(obj.columns, obj.dtypes, strict=True)]).encode())
        h.update(repr(list(obj.index.names)).encode())
        try:
            _pd_fingerprint(obj, h)
            return h.hexdigest()
        except Exception:
            pass
    elif is_polars_dataframe(obj):
        h.update(repr(list(obj.schema.items())).encode())
        try:
            h.update(obj.hash_rows(seed=0).to_numpy().tobytes())
            return h.hexdigest()
        except Exception:
            pass
    try:
        h.update(to_arrow_ipc(obj))
    except Exception:
        try:
            h.update(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            h.update(f"id:{id(obj)}".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ Arrow


def to_arrow_table(obj: Any) -> pyarrow.Table:
    """The whole frame as a ``pyarrow.Table`` (pandas index as leading columns, names as in
    :func:`schema`)."""
    _check(obj)
    if is_pyarrow_table(obj):
        return _pa_prepare(obj)
    return nw.from_native(_prepared_whole(obj), eager_only=True).to_arrow()


def to_arrow_ipc(obj: Any) -> bytes:
    """The whole frame as an Arrow IPC stream (read back with ``pyarrow.ipc.open_stream``)."""
    import pyarrow as pa

    table = to_arrow_table(obj)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def to_arrow_ipc_base64(obj: Any) -> str:
    """:func:`to_arrow_ipc`, base64-encoded (for a blob resource)."""
    return base64.b64encode(to_arrow_ipc(obj)).decode("ascii")
