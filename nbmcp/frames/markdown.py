"""Rows as a GitHub markdown table: what an assistant reads when it reads a frame as text."""

from __future__ import annotations

import json
from typing import Any

from .backends import column_names, row_count
from .pages import page

__all__ = ["MAX_CELL_CHARS", "head_markdown", "markdown_table"]

MAX_CELL_CHARS = 80


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
    # a raw pipe or newline inside a cell would break the table's row structure
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
    """The first ``n`` rows of a frame as a markdown table (header only for an empty frame)."""
    names = column_names(obj)
    records = page(obj, 0, n) if row_count(obj) else []
    return markdown_table(records, names)
