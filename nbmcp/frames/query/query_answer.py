"""``query``'s answer, worded once for both wings: the ``save_as`` name rule, the structured payload and the text.

The in-kernel server (:mod:`nbmcp.inkernel.views.query`) and ``nbmcp serve`` (:mod:`nbmcp.serve.kernel_tools.query`,
whose payload is made in the kernel by :func:`nbmcp.frames.query.sql.run_json`) both answer with :func:`payload` and
:func:`answer_text`, so the two cannot drift apart.

This module imports only the standard library at import time: ``nbmcp serve`` sends its source to the kernel
beside the query engine (:mod:`nbmcp.serve.kernel_tools.query`'s ``ENGINE_MODULES``).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

__all__ = ["SAVE_AS_RULE", "answer_text", "payload", "save_as_problem"]

SAVE_AS_RULE = "a new name made of letters, digits and _, not starting with _ and not a Python keyword"


def save_as_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a ``save_as`` name, or None. A leading ``_`` is refused: such names are hidden from
    the variables and tables listed, so the result could not be found again; a keyword could not be written in
    code."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") or keyword.iskeyword(name):
        return f"save_as must be {SAVE_AS_RULE}, got {name!r}"
    return None


def payload(
    result: Any,
    records: list[dict[str, Any]],
    *,
    save_as: str | None = None,
    save_max_rows: int = 0,
    save_max_bytes: int = 0,
) -> dict[str, Any]:
    """The structured answer of a ``sql.QueryResult`` whose shown rows are ``records``; with ``save_as``, what was
    saved under that name (and the bound that cut it, if one did)."""
    data: dict[str, Any] = {
        "columns": list(result.rows.column_names),
        "rows": records,
        "row_count": len(records),
        "more": result.more,
        "engine": result.engine,
        "elapsed_ms": round(result.elapsed_s * 1000, 1),
        "tables": result.tables,
        "notes": result.notes,
        "cut": result.cut,
        "big_integers_as_strings": result.big_integers,
    }
    if save_as is not None:
        saved: dict[str, Any] = {"name": save_as, "rows": result.saved.num_rows, "truncated": result.saved_truncated}
        if result.saved_over_bytes:
            saved["max_bytes"] = save_max_bytes
        elif result.saved_truncated:
            saved["max_rows"] = save_max_rows
        data["saved_as"] = saved
    return data


def answer_text(data: dict[str, Any], markdown_table: Callable[[list[dict[str, Any]], list[str]], str]) -> str:
    """``query``'s text: how many rows, from what, what was saved, the notes, then the rows as a markdown table
    (``markdown_table``: :func:`nbmcp.frames.markdown_table`, passed in so the kernel's copy imports nothing)."""
    n = len(data["rows"])
    shown = f"{n:,} rows" + (
        f" (the first {n:,}; the result has more: raise limit or aggregate)" if data["more"] else ""
    )
    head = f"{shown} from {data['engine']} in {data['elapsed_ms']:.0f} ms"
    saved = data.get("saved_as")
    if saved:
        cut = ""
        if "max_bytes" in saved:
            cut = f", cut at the save limit of {saved['max_bytes']:,} bytes"
        elif saved.get("truncated"):
            cut = f", cut at the save limit of {saved.get('max_rows', saved['rows']):,} rows"
        name = saved["name"]
        head += f"; saved as {name!r} ({saved['rows']:,} rows{cut}): page it with read_rows({name!r})"
    head += "".join(f"\nnote: {note}" for note in data.get("notes") or [])
    return head + "\n\n" + (markdown_table(data["rows"], data["columns"]) if n else "(no rows)")
