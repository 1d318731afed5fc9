"""The summary every backend shares: kind, shape, row count (exact or capped), schema, memory, head and
profile — one dict, the same keys for a pandas frame and a Spark table."""

from __future__ import annotations

from typing import Any

from .profile import profile as column_profile
from .sources import Source

__all__ = ["HEAD_ROWS", "describe"]

HEAD_ROWS = 10


def describe(source: Source, *, with_profile: bool = True) -> dict[str, Any]:
    """``{"kind", "shape": [rows or None, cols], "total_rows", "count_capped", "columns", "memory_bytes",
    "head", "profile"}``. Cost: a capped count, one page of ``HEAD_ROWS`` and a bounded profile. A profile
    that fails is reported under ``profile_error``; the rest of the summary stands."""
    count = source.count()
    columns = source.schema()
    info: dict[str, Any] = {
        "kind": source.kind,
        "shape": [count.rows, source.shape()[1]],
        **count.fields(),
        "columns": columns,
        "memory_bytes": source.memory_bytes(),
        "head": source.page(0, HEAD_ROWS) if count.at_least else [],
    }
    if with_profile:
        try:
            info["profile"] = column_profile(source)
        except Exception as exc:
            info["profile_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return info
