"""A column profile computed by the backend itself: per column its type, nulls, distinct values, min/max,
mean for numbers and top values for strings.

The profile runs on the first ``profile_rows`` rows (a ``head``/``limit`` the backend pushes down), so its
cost is bounded by rows whatever the source's size; when the source has more rows it says it was sampled.
The aggregates are narwhals expressions on the backend's own frame (DuckDB, polars, Ibis, Dask and Spark
run them as their own queries); top values run one small group-by per string column while time is left
(``profile_seconds``), and the profile says which columns it skipped.
"""

from __future__ import annotations

import time
from typing import Any

from .jsonable import to_jsonable
from .sources import Source

__all__ = ["profile"]

_TOP_VALUES = 5
_MAX_TOP_COLUMNS = 20


def _kind(dtype: Any) -> str:
    if dtype.is_numeric():
        return "number"
    if dtype.is_temporal():
        return "temporal"
    name = str(dtype)
    if name in ("String", "Categorical", "Enum") or name.startswith("Enum"):
        return "string"
    if name == "Boolean":
        return "boolean"
    return "other"


def _number(stat: str, value: Any) -> Any:
    """Counts as int and means as float: backends return HUGEINT/Decimal for sums and counts."""
    if value is None:
        return None
    try:
        if stat in ("nulls", "distinct"):
            return int(value)
        if stat == "mean":
            return to_jsonable(float(value))
    except (TypeError, ValueError):
        pass
    return to_jsonable(value)


def _collect(frame: Any) -> Any:
    return frame.collect() if hasattr(frame, "collect") else frame


def _aggregates(nw: Any, name: str, kind: str, i: int) -> list[Any]:
    col = nw.col(name)
    exprs = [col.null_count().alias(f"{i}:nulls")]
    if kind != "other":
        exprs.append(col.n_unique().alias(f"{i}:distinct"))
        exprs += [col.min().alias(f"{i}:min"), col.max().alias(f"{i}:max")]
    if kind == "number":
        exprs.append(col.mean().alias(f"{i}:mean"))
    return exprs


def profile(source: Source) -> dict[str, Any]:
    """``{"rows_profiled", "sampled", "note", "columns": [{"name", "dtype", "nulls", "distinct", "min",
    "max", "mean", "top": [{"value", "count"}]}], ...}``; per-column failures are reported in the column."""
    import narwhals as nw

    limits = source.limits
    started = time.monotonic()
    deadline = started + limits.profile_seconds
    frame = source.profile_frame(limits.profile_rows)
    schema = frame.collect_schema() if hasattr(frame, "collect_schema") else frame.schema
    kinds = {name: _kind(dtype) for name, dtype in schema.items()}
    columns: list[dict[str, Any]] = [{"name": n, "dtype": str(schema[n])} for n in schema]
    exprs = [nw.len().alias("rows")]
    for i, name in enumerate(schema):
        exprs += _aggregates(nw, name, kinds[name], i)
    values: dict[str, Any] = {}
    try:
        values = _collect(frame.select(exprs)).rows(named=True)[0]
    except Exception:  # one column's aggregate the backend refuses: ask column by column
        for i, name in enumerate(schema):
            try:
                values.update(_collect(frame.select(_aggregates(nw, name, kinds[name], i))).rows(named=True)[0])
            except Exception as exc:
                columns[i]["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        try:
            values["rows"] = _collect(frame.select(nw.len().alias("rows"))).item()
        except Exception:
            values["rows"] = None
    for i, entry in enumerate(columns):
        for stat in ("nulls", "distinct", "min", "max", "mean"):
            key = f"{i}:{stat}"
            if key in values:
                entry[stat] = _number(stat, values[key])
    skipped = []
    strings = [i for i, n in enumerate(schema) if kinds[n] == "string"]
    for i in strings[:_MAX_TOP_COLUMNS]:
        name = columns[i]["name"]
        if time.monotonic() > deadline:
            skipped.append(name)
            continue
        try:
            top = _collect(
                frame.group_by(name)
                .agg(nw.len().alias("count"))
                # ties in value order, so the same data always gives the same answer
                .sort(["count", name], descending=[True, False], nulls_last=True)
                .head(_TOP_VALUES)
            )
            columns[i]["top"] = [
                {"value": to_jsonable(r[name]), "count": int(r["count"])} for r in top.rows(named=True)
            ]
        except Exception as exc:
            columns[i]["top_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    profiled = values.get("rows")
    count = source.count()
    sampled = profiled is not None and (count.rows is None or count.rows > profiled)
    out: dict[str, Any] = {
        "rows_profiled": profiled,
        "sampled": sampled,
        "seconds": round(time.monotonic() - started, 3),
        "columns": columns,
    }
    if sampled:
        out["note"] = (
            f"computed on the first {profiled:,} rows of {count.text()} (c.NbMCP.profile_rows); "
            "distinct, min, max, mean and top values describe those rows only"
        )
    if skipped or len(strings) > _MAX_TOP_COLUMNS:
        out["top_values_skipped"] = skipped + [columns[i]["name"] for i in strings[_MAX_TOP_COLUMNS:]]
    return out
