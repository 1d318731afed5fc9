"""Cell values (and any nested Python data) made strict-JSON-safe for MCP structured content."""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import uuid
from collections.abc import Mapping
from typing import Any

from .backends import is_series

__all__ = ["big_integer_columns", "big_integers_note", "to_jsonable"]

_MAX_DEPTH = 20
_MAX_OPAQUE_CHARS = 200
# JSON numbers are doubles in most clients (JavaScript): integers hold exactly only below 2**53.
EXACT_INTEGERS = 2**53


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
    numpy scalars/arrays -> Python, integers (and whole Decimals, e.g. DuckDB's HUGEINT) -> numbers when
    |n| < 2**53 else exact strings, other Decimals/UUID -> str, bytes -> bounded repr, mappings/sequences
    recursively (keys become strings), anything else -> bounded repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value) if -EXACT_INTEGERS < value < EXACT_INTEGERS else str(int(value))
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
    if isinstance(value, decimal.Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        return to_jsonable(int(value))  # a whole number of scale 0 (HUGEINT, DECIMAL(p, 0)); 12.50 stays text
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


# Column types whose values are text: a string of digits there is text, not an integer made a string.
_TEXT_DTYPES = ("String", "Categorical", "Enum", "Binary")


def _big_string(value: Any) -> bool:
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        return digits.isascii() and digits.isdigit() and len(digits) >= 16 and abs(int(value)) >= EXACT_INTEGERS
    if isinstance(value, list):
        return any(_big_string(v) for v in value)
    if isinstance(value, dict):
        return any(_big_string(v) for v in value.values())
    return False


def big_integer_columns(records: list[dict[str, Any]], schema: list[dict[str, Any]]) -> list[str]:
    """Columns of a page of records (made by :func:`to_jsonable`) whose integers beyond ±2**53 were given as
    strings; ``schema`` (``Source.schema()``) tells text columns, whose digits are text, apart."""
    text = {str(c["name"]) for c in schema if str(c.get("dtype", "")).startswith(_TEXT_DTYPES)}
    names = dict.fromkeys(k for record in records for k in record)
    return [n for n in names if n not in text and any(_big_string(r.get(n)) for r in records)]


def big_integers_note(columns: list[str]) -> str:
    """What an answer says about :func:`big_integer_columns`."""
    return (
        f"integers beyond ±2**53 in {', '.join(columns)} are given as strings: JSON numbers would not hold them exactly"
    )
