"""Frames of any backend: schema, capped counts, pages, profiles, markdown, fingerprints, Arrow.

Nothing here imports a backend (a frame's library is already loaded when a frame exists); pyarrow is
imported only when Arrow data is produced. A page costs O(page), never O(frame).

- :mod:`.sources` — the adapter interface (:func:`source_for`), limits and capped counts; one adapter per
  backend in :mod:`.adapters` (pandas, polars eager and lazy, Arrow tables, readers and datasets, DuckDB,
  Ibis, Dask, PySpark);
- :mod:`.profile` — per-column statistics computed by the backend on a bounded prefix;
- :mod:`.describe` — the summary every backend shares;

- :mod:`.kinds` — the one table of backends: which objects are tables, their adapter, how SQL reaches each;
- :mod:`.page_info` — one page of any table as ``read_rows`` answers it (both wings);
- :mod:`.query.query_answer` — ``query``'s payload, text and ``save_as`` rule (both wings);
- :mod:`.backends` — which objects are eager frames, their column names and native slices;
- :mod:`.pages` — shape, schema, memory, summary and pages of JSON-safe records;
- :mod:`.jsonable` — cell values made strict-JSON-safe;
- :mod:`.markdown` — records as a markdown table;
- :mod:`.arrow` — Arrow record-batch streams under a byte cap, and whole-frame export of eager frames;
- :mod:`.digest` — a content fingerprint for change notifications.

Rooms: :mod:`.query` (the ``query`` engine: DuckDB's and Spark's sides, bounds, the forked child, the answer's
wording). At the top: :mod:`.arrow`, :mod:`.backends`, :mod:`.describe`, :mod:`.digest`, :mod:`.jsonable`,
:mod:`.kinds`, :mod:`.markdown`, :mod:`.page_info`, :mod:`.pages`, :mod:`.profile`, :mod:`.sources`.
"""

from .arrow import ArrowExport, CappedBatches, arrow_export, arrow_stream, to_arrow_ipc, to_arrow_table
from .backends import as_frame, frame_kind, is_frame, is_series, unique_names
from .describe import describe
from .digest import fingerprint
from .jsonable import to_jsonable
from .markdown import MAX_CELL_CHARS, head_markdown, markdown_table
from .page_info import page_info
from .pages import MAX_PAGE_ROWS, memory_bytes, page, schema, shape, summary
from .profile import profile
from .sources import FullScanError, Limits, RowCount, Source, is_source, source_for

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_PAGE_ROWS",
    "ArrowExport",
    "CappedBatches",
    "FullScanError",
    "Limits",
    "RowCount",
    "Source",
    "arrow_export",
    "arrow_stream",
    "as_frame",
    "describe",
    "fingerprint",
    "frame_kind",
    "head_markdown",
    "is_frame",
    "is_series",
    "is_source",
    "markdown_table",
    "memory_bytes",
    "page",
    "page_info",
    "profile",
    "schema",
    "shape",
    "source_for",
    "summary",
    "to_arrow_ipc",
    "to_arrow_table",
    "to_jsonable",
    "unique_names",
]
