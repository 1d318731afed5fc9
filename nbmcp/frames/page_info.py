"""One page of any table as both wings answer ``read_rows`` (the in-kernel server and ``nbmcp serve``'s probe)."""

from __future__ import annotations

from typing import Any

from .jsonable import big_integer_columns, big_integers_note
from .sources import Source

__all__ = ["page_info"]


def page_info(source: Source, offset: int, limit: int, columns: list[str] | None = None) -> dict[str, Any]:
    """Rows ``offset`` to ``offset + limit`` of ``source`` as records, with their column names and the count
    (``total_rows``, ``count_capped``, ``rows_at_least``); big integers given as strings are named, with a note."""
    records = source.page(offset, limit, columns)
    count = source.count()  # after the page: a short last page makes a lazy source's count exact for free
    # The page's own keys name its columns; only an empty page asks the source for them.
    names = columns or (list(records[0]) if records else source.columns())
    info = {"offset": offset, "limit": limit, **count.fields(), "columns": names, "rows": records}
    big = big_integer_columns(records, source.schema()) if records else []
    if big:  # a client reads the strings as text otherwise
        info.update(big_integers_as_strings=big, note=big_integers_note(big))
    return info
