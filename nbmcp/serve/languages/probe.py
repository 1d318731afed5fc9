"""The inspection probe: runs *inside* the kernel, answering ``list_variables``, ``inspect_variable`` and
``read_rows`` with JSON.

nbmcp does not import this module: :mod:`..kernel_tools.inspection` sends its source to the kernel, which runs it as the
module ``_nbmcp_probe``. So it imports nothing but the standard library, and ``nbmcp.frames`` when the
kernel's environment has nbmcp (every backend nbmcp knows: eager and lazy frames, Arrow readers and
datasets, DuckDB, Ibis, Dask, Spark; pages pushed down to the backend, capped counts, profiles); without
it, pandas, polars and pyarrow frames are paged the plain way, told apart by the table of backends
(:mod:`nbmcp.frames.kinds`), whose source is sent after the probe's and installed by :func:`_use_kinds`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import reprlib
import types
from typing import Any

try:
    from nbmcp import frames as _frames
    from nbmcp.frames import kinds as _kinds
except Exception:  # a kernel without nbmcp (or with one too old): the table of backends comes with the probe
    _frames = _kinds = None

__all__ = ["inspect_variable", "list_variables", "read_rows"]

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 100
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 10
_repr.maxlevel = 2


def _use_kinds(source: str) -> None:
    """Install the table of backends (:mod:`nbmcp.frames.kinds`) sent after the probe, where nbmcp is missing."""
    global _kinds
    if _kinds is None:
        _kinds = types.ModuleType("_nbmcp_kinds")
        exec(compile(source, "<nbmcp.frames.kinds>", "exec"), _kinds.__dict__)


def _namespace() -> tuple[dict[str, Any], set[str]]:
    return _kinds.user_namespace()


def _package(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


# What the probe pages without nbmcp: the eager frames of the table of backends, the plain way (by kind).
PLAIN_PAGES = {
    "pandas.DataFrame": lambda f, offset, limit: json.loads(
        f.iloc[offset : offset + limit].to_json(orient="records", date_format="iso", default_handler=str)
    ),
    "polars.DataFrame": lambda f, offset, limit: f.slice(offset, limit).to_dicts(),
    "pyarrow.Table": lambda f, offset, limit: f.slice(offset, limit).to_pylist(),
}


def _is_frame(obj: Any) -> bool:
    if _frames is not None:
        try:
            return bool(_frames.is_source(obj))
        except Exception:
            pass
    backend = _kinds.backend_of(obj)
    return backend is not None and backend.kind in PLAIN_PAGES


def _shape(obj: Any) -> list[int] | None:
    try:
        if _is_frame(obj):
            return _frames.source_for(obj).shape() if _frames is not None else list(obj.shape)
        shape = getattr(obj, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            return list(shape)
    except Exception:
        pass
    return None


def _len(obj: Any) -> int | None:
    if isinstance(obj, (str, bytes, list, tuple, dict, set, frozenset)) or _package(obj) == "collections":
        return len(obj)
    return None


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else t.__module__.split(".")[0] + "." + t.__qualname__


def _brief(obj: Any) -> str:
    if _is_frame(obj):
        shape = _shape(obj)
        return f"{type(obj).__name__} {'x'.join(map(str, shape)) if shape else ''}"
    try:
        return _repr.repr(obj)
    except Exception as e:
        return f"<repr failed: {type(e).__name__}>"


def _describe(name: str, obj: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "type": _type_name(obj)}
    shape = _shape(obj)
    if shape is not None:
        d["shape"] = shape
    else:
        n = _len(obj)
        if n is not None:
            d["len"] = n
    d["repr"] = _brief(obj)
    return d


def _resolve(name: str, *, tables: bool = False) -> Any:
    """The object ``name`` (a variable, or a dotted path from one) names. A NameError for a variable that is not
    there names the closest, or else what there is (``tables``: only frames and lists, what read_rows pages)."""
    ns, hidden = _namespace()
    head, *rest = name.split(".")
    if head not in ns:
        names = [n for n in ns if not n.startswith("_") and n not in hidden]
        close = difflib.get_close_matches(head, names, 5)
        if close:
            raise NameError(f"name {head!r} is not defined in the kernel. Did you mean: {', '.join(close)}?")
        if tables:
            names = [n for n in names if _is_frame(ns[n]) or isinstance(ns[n], (list, tuple))]
        what = "tables (frames and lists)" if tables else "variables"
        shown = ", ".join(sorted(names)[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        there = f"its {what}: {shown}" if names else f"it has no {what} yet"
        raise NameError(f"name {head!r} is not defined in the kernel; {there}")
    obj = ns[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _page(frame: Any, offset: int, limit: int, columns: list[str] | None) -> list[dict[str, Any]]:
    """One page of a frame as records, the plain way (a kernel without nbmcp)."""
    kind = _kinds.backend_of(frame).kind
    if columns:
        frame = frame.select(list(columns)) if kind == "pyarrow.Table" else frame[list(columns)]
    return PLAIN_PAGES[kind](frame, offset, limit)


def _plain_columns(frame: Any) -> list[Any]:
    names = getattr(frame, "column_names", None)  # a pyarrow Table's columns are its arrays
    return list(names) if isinstance(names, list) else list(frame.columns)


def _error(e: BaseException) -> str:
    return json.dumps({"error": f"{type(e).__name__}: {e}"})


def list_variables(limit: int) -> str:
    """The user's variables (at most ``limit``), described briefly, and how many there are."""
    ns, hidden = _namespace()
    out, total = [], 0
    for name, obj in list(ns.items()):
        if name.startswith("_") or name in hidden or isinstance(obj, types.ModuleType):
            continue
        total += 1
        if len(out) < limit:
            try:
                out.append(_describe(name, obj))
            except Exception as e:
                out.append({"name": name, "type": "?", "repr": f"<failed: {e}>"})
    return json.dumps({"variables": out, "total": total}, default=str)


def _describe_frame(d: dict[str, Any], obj: Any) -> None:
    if _frames is not None:
        d.update(_frames.describe(_frames.source_for(obj)))
        d["frame_kind"] = d.get("kind")
        d["kind"] = "frame"
    else:
        d["kind"] = "frame"
        # no zip(strict=...): the kernel's Python may be older than 3.10
        types_ = obj.schema.types if _kinds.backend_of(obj).kind == "pyarrow.Table" else obj.dtypes
        d["columns"] = [{"name": str(c), "dtype": str(t)} for c, t in zip(_plain_columns(obj), types_)]  # noqa: B905
        d["head"] = _page(obj, 0, 10, None)


def _describe_callable(d: dict[str, Any], name: str, obj: Any, max_chars: int) -> None:
    d["kind"] = "callable"
    with contextlib.suppress(TypeError, ValueError):  # builtins without a signature
        d["signature"] = name + str(inspect.signature(obj))
    d["doc"] = (inspect.getdoc(obj) or "")[:max_chars]


def _describe_value(d: dict[str, Any], obj: Any, max_chars: int) -> None:
    d["kind"] = "value"
    text = repr(obj)
    d["repr"] = text[:max_chars] + ("..." if len(text) > max_chars else "")
    dtype = getattr(obj, "dtype", None)
    if dtype is not None:
        d["dtype"] = str(dtype)
    if not isinstance(obj, (int, float, str, bytes, bool, list, tuple, set)):
        d["attributes"] = [a for a in dir(obj) if not a.startswith("_")][:60]


def inspect_variable(name: str, max_chars: int) -> str:
    """One variable (or dotted attribute path) in detail; reprs are cut at ``max_chars``."""
    try:
        obj = _resolve(name)
    except Exception as e:
        return _error(e)
    d = _describe(name, obj)
    try:
        if _is_frame(obj):
            _describe_frame(d, obj)
        elif callable(obj) and not isinstance(obj, type):
            _describe_callable(d, name, obj, max_chars)
        elif isinstance(obj, dict):
            d["kind"] = "mapping"
            d["keys"] = [_repr.repr(k) for k in list(obj)[:50]]
            d["repr"] = repr(obj)[:max_chars]
        else:
            _describe_value(d, obj, max_chars)
    except Exception as e:
        d["warning"] = f"partial description: {type(e).__name__}: {e}"
    return json.dumps(d, default=str)


def _list_page(items: list[Any] | tuple[Any, ...], offset: int, limit: int) -> tuple[list[dict], list[str]]:
    page = list(items[offset : offset + limit])
    if page and all(isinstance(r, dict) for r in page):
        rows = [{str(k): v for k, v in r.items()} for r in page]
        return rows, list(dict.fromkeys(k for r in rows for k in r))
    return [{"index": offset + i, "value": v} for i, v in enumerate(page)], ["index", "value"]


_EXACT_INTEGERS = 2**53  # JSON numbers (doubles in JavaScript clients) hold integers exactly below this


def _exact(value: Any) -> tuple[Any, bool]:
    """``value`` with its integers beyond ±2**53 (and whole Decimals past it) as exact strings; whether any were."""
    if isinstance(value, bool):
        return value, False
    if type(value).__name__ == "Decimal" and value.is_finite() and value.as_tuple().exponent == 0:
        value = int(value)
    if isinstance(value, int):
        big = not -_EXACT_INTEGERS < value < _EXACT_INTEGERS
        return (str(value) if big else value), big
    if isinstance(value, dict):
        pairs = [(str(k), _exact(v)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, any(big for _, (_, big) in pairs)
    if isinstance(value, (list, tuple)):
        items = [_exact(v) for v in value]
        return [v for v, _ in items], any(big for _, big in items)
    return value, False


def _big_integers(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows made without nbmcp (or of a list) with big integers as strings, and the columns that held them."""
    out, big = [], {}
    for row in rows:
        exact = {k: _exact(v) for k, v in row.items()}
        out.append({k: v for k, (v, _) in exact.items()})
        big.update({k: None for k, (_, was) in exact.items() if was})
    return out, list(big)


def read_rows(name: str, offset: int, limit: int, columns: list[str] | None) -> str:
    """Rows ``offset`` to ``offset + limit`` of a frame or a list, as records with their column names."""
    try:
        obj = _resolve(name, tables=True)
    except Exception as e:
        return _error(e)
    try:
        if _frames is not None and _is_frame(obj):  # the answer the in-kernel server gives
            return json.dumps(_frames.page_info(_frames.source_for(obj), offset, limit, columns), default=str)
        if _is_frame(obj):  # a kernel without nbmcp: the plain way
            total = _shape(obj)[0]
            rows = _page(obj, offset, limit, columns)
            names = columns or (list(rows[0]) if rows else [str(c) for c in _plain_columns(obj)])
        elif isinstance(obj, (list, tuple)):
            total = len(obj)
            rows, names = _list_page(obj, offset, limit)
            if columns:
                names = list(columns)
                rows = [{c: r.get(c) for c in names} for r in rows]
        else:
            return json.dumps({"error": f"TypeError: {name} is a {_type_name(obj)}, not a table (DataFrame) or a list"})
    except Exception as e:
        return _error(e)
    rows, big = _big_integers(rows)
    answer = {"offset": offset, "limit": limit, "total_rows": total, "count_capped": False, "columns": names}
    answer["rows"] = rows
    if big:  # a client reads the strings as text otherwise
        answer["big_integers_as_strings"] = big
        answer["note"] = (
            f"integers beyond ±2**53 in {', '.join(big)} are given as strings: JSON numbers would not hold them exactly"
        )
    return json.dumps(answer, default=str)
