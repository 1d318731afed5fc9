"""Dataframes (pandas, polars, pyarrow) through narwhals: schema, shape, pages, markdown, fingerprints, Arrow.

Nothing here imports pandas or polars (a frame's library is already loaded when a frame exists); pyarrow
is imported only when Arrow data is produced. A page costs O(page), never O(frame).

- :mod:`.backends` — which objects are frames, their column names and native slices;
- :mod:`.pages` — shape, schema, memory, summary and pages of JSON-safe records;
- :mod:`.jsonable` — cell values made strict-JSON-safe;
- :mod:`.markdown` — records as a markdown table;
- :mod:`.arrow` — whole-frame Arrow export;
- :mod:`.digest` — a content fingerprint for change notifications.
"""

from .arrow import to_arrow_ipc, to_arrow_table
from .backends import as_frame, frame_kind, is_frame, is_series, unique_names
from .digest import fingerprint
from .jsonable import to_jsonable
from .markdown import MAX_CELL_CHARS, head_markdown, markdown_table
from .pages import MAX_PAGE_ROWS, memory_bytes, page, schema, shape, summary

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
    "to_arrow_table",
    "to_jsonable",
    "unique_names",
]
