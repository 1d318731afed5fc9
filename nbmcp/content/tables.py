"""Tables -> a markdown table of the head plus structured rows (columns, dtypes, rows, total rows).

Three sources: a live frame (:mod:`nbmcp.frames` reads its head, typed), the first ``<table>`` of an HTML
output (pandas' and polars' notebook display, scraped: a kernel's output is all ``nbmcp serve`` has), and
pandas' table schema output (``application/vnd.dataresource+json``).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from .. import frames
from .converted import Converted, text_block

__all__ = [
    "FRAME_HEAD_ROWS",
    "FRAME_MAX_COLUMNS",
    "STRUCTURED_CELL_CHARS",
    "frame_converted",
    "html_table_converted",
    "table_schema_converted",
]

FRAME_HEAD_ROWS = 20
FRAME_MAX_COLUMNS = 40
STRUCTURED_CELL_CHARS = 1_000


def frame_converted(obj: Any) -> Converted:
    """A frame's first :data:`FRAME_HEAD_ROWS` rows and :data:`FRAME_MAX_COLUMNS` columns as markdown,
    plus structured content with every column name, the dtypes, the shown rows and the total."""
    rows, cols = frames.shape(obj)
    columns = frames.schema(obj)
    names = [c["name"] for c in columns]
    shown_names = names[:FRAME_MAX_COLUMNS]
    k = min(rows, FRAME_HEAD_ROWS)
    records = frames.page(obj, 0, k, shown_names if len(shown_names) < len(names) else None) if k else []
    note = f"{rows} rows x {cols} columns (showing first {k}"
    if len(shown_names) < len(names):
        note += f" rows and first {len(shown_names)} of {len(names)} columns"
    note += ")"
    structured: dict[str, Any] = {
        "kind": frames.frame_kind(obj),
        "columns": names,
        "dtypes": {c["name"]: c["dtype"] for c in columns},
        "rows": [{k_: _cap_cell(v) for k_, v in r.items()} for r in records],
        "total_rows": rows,
        "truncated": k < rows or len(shown_names) < len(names),
    }
    if len(shown_names) < len(names):
        structured["shown_columns"] = shown_names
    text = frames.markdown_table(records, shown_names) + "\n\n" + note
    return Converted([text_block(text)], structured)


def _cap_cell(value: Any) -> Any:
    if isinstance(value, str) and len(value) > STRUCTURED_CELL_CHARS:
        return value[:STRUCTURED_CELL_CHARS] + "…"
    return value


class _TableParser(HTMLParser):
    """The first ``<table>`` of an HTML fragment: header rows, body rows, colspan/rowspan, and the
    ``<p>N rows x M columns</p>`` (with a multiplication sign) footer pandas adds to truncated frames."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.done = False
        self.in_head = False
        self.rows: list[tuple[bool, list[tuple[str, bool]]]] = []  # (in thead, [(text, is_th)])
        self.cell: list[str] | None = None
        self.cell_th = False
        self.row_spans: list[list[tuple[int, int]]] = []  # per row, per cell: (colspan, rowspan)
        self.after: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth != 1:  # a table nested in a cell is part of that cell, not of the grid
            return
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.rows.append((self.in_head, []))
            self.row_spans.append([])
        elif tag in ("td", "th") and self.rows:
            self.cell, self.cell_th = [], tag == "th"
            a = dict(attrs)
            self.row_spans[-1].append((_int_attr(a.get("colspan")), _int_attr(a.get("rowspan"))))
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
            self.done = self.depth == 0
        elif self.depth != 1:
            return
        elif tag == "thead":
            self.in_head = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append((" ".join("".join(self.cell).split()), self.cell_th))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        elif self.done:
            self.after.append(data)

    def grid(self) -> list[tuple[bool, list[tuple[str, bool]]]]:
        """Rows with colspan/rowspan expanded, so every row has one entry per column."""
        pending: dict[int, tuple[tuple[str, bool], int]] = {}
        out = []
        for (in_head, cells), spans in zip(self.rows, self.row_spans, strict=True):
            row: list[tuple[str, bool]] = []
            queue = list(zip(cells, spans, strict=True))
            col = 0
            while queue or col in pending:
                if col in pending:
                    cell, left = pending.pop(col)
                    row.append(cell)
                    if left > 1:
                        pending[col] = (cell, left - 1)
                    col += 1
                    continue
                cell, (colspan, rowspan) = queue.pop(0)
                for _ in range(colspan):
                    row.append(cell)
                    if rowspan > 1:
                        pending[col] = (cell, rowspan - 1)
                    col += 1
            out.append((in_head, row))
        return out


def _int_attr(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SHAPE_FOOTER = re.compile(r"([\d,]+)\s+rows\s*[\u00d7x]\s*([\d,]+)\s+columns")
_POLARS_SHAPE = re.compile(r"shape:\s*\((\d+),\s*(\d+)\)")


def _cell_value(text: str) -> Any:
    if text in ("", "NaN", "NaT", "None", "null", "<NA>", "nan"):
        return None
    if _NUMBER.fullmatch(text):
        try:
            return int(text)
        except ValueError:
            return float(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':  # polars quotes strings
        return text[1:-1]
    return text


def html_table_converted(html: str) -> Converted | None:
    """A markdown table plus structured rows from the first ``<table>`` in ``html``; None if none."""
    if "<table" not in html.lower():
        return None
    parser = _TableParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return None
    grid = parser.grid()
    if not grid:
        return None
    head = [cells for in_head, cells in grid if in_head]
    body = [cells for in_head, cells in grid if not in_head]
    dtypes: list[str] | None = None
    if head and all(not th for _, th in head[-1]) and len(head) > 1:  # polars: a row of dtypes (<td>)
        dtypes = [t for t, _ in head.pop()]
    if not head and body and all(th for _, th in body[0]):
        head = [body.pop(0)]
    width = max(len(r) for r in head + body)
    names: list[str] = []
    for i in range(width):
        parts = [r[i][0] for r in head if i < len(r) and r[i][0]]
        parts = [p for j, p in enumerate(parts) if j == 0 or p != parts[j - 1]]
        names.append("_".join(parts) or ("index" if i == 0 else f"column_{i}"))
    names = frames.unique_names(names)
    records = [{names[i]: _cell_value(t) for i, (t, _) in enumerate(r)} for r in body]
    data_rows = [r for r in records if not all(v in ("...", "…") for v in r.values())]
    after = " ".join(parser.after)
    total = None
    if m := _SHAPE_FOOTER.search(after) or _POLARS_SHAPE.search(html):
        total = int(m.group(1).replace(",", ""))
    shown = len(data_rows)
    structured: dict[str, Any] = {
        "columns": names,
        "rows": data_rows,  # the "..." row of a truncated display is only in the markdown
        "total_rows": total if total is not None else shown,
        "truncated": total is not None and total > shown,
    }
    if dtypes is not None and len(dtypes) == len(names):
        structured["dtypes"] = dict(zip(names, dtypes, strict=True))
    text = frames.markdown_table(records, names)
    if total is not None:
        text += f"\n\n{total} rows (showing {shown})"
    return Converted([text_block(text)], structured)


def table_schema_converted(value: Any) -> Converted | None:
    """``application/vnd.dataresource+json`` (pandas' table schema output) as markdown plus structured rows
    (the first :data:`FRAME_HEAD_ROWS`); None if ``value`` is not such a document."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        return None
    fields = value.get("schema", {}).get("fields", [])
    names = [str(f.get("name")) for f in fields if isinstance(f, dict)]
    records = [r for r in value["data"] if isinstance(r, dict)]
    if not names and records:
        names = list(records[0])
    structured = {
        "columns": names,
        "dtypes": {str(f.get("name")): str(f.get("type")) for f in fields if isinstance(f, dict)},
        "rows": frames.to_jsonable(records[:FRAME_HEAD_ROWS]),
        "total_rows": len(records),
        "truncated": len(records) > FRAME_HEAD_ROWS,
    }
    text = frames.markdown_table(structured["rows"], names)
    return Converted([text_block(text)], structured)
