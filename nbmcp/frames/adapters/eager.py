"""pandas and polars DataFrames and pyarrow Tables: in memory already, so counts are free and pages are
native slices (:mod:`nbmcp.frames.pages`, unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import narwhals as nw

from .. import pages
from ..backends import native_slice, row_count
from ..sources import Source

__all__ = ["EagerSource"]


class EagerSource(Source):
    lazy = False

    def columns(self) -> list[str]:
        from ..backends import column_names

        return column_names(self.obj)

    def schema(self) -> list[dict[str, Any]]:
        return pages.schema(self.obj)

    def known_rows(self) -> int:
        return row_count(self.obj)

    def count_upto(self, n: int) -> int:
        return min(row_count(self.obj), n)

    def shape(self) -> list[int | None]:
        return list(pages.shape(self.obj))  # the library's own shape (a pandas index is not a column here)

    def memory_bytes(self) -> int | None:
        return pages.memory_bytes(self.obj)

    def row_bytes(self) -> int:
        memory, rows = self.memory_bytes(), row_count(self.obj)
        if memory and rows:
            return max(1, memory // rows)
        return super().row_bytes()

    def page(self, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> list[dict[str, Any]]:
        return pages.page(self.obj, offset, limit, columns)

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        frame = nw.from_native(native_slice(self.obj, offset, limit), eager_only=True)
        if columns is not None:
            frame = frame.select(columns)
        return frame.to_arrow()

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        # Slice first, convert the slice: a batch costs its own rows, never the frame's.
        total = row_count(self.obj)
        for offset in range(0, total, batch_rows):
            yield from self.slice_arrow(offset, batch_rows, columns).to_batches()

    def profile_frame(self, n: int) -> Any:
        return nw.from_native(native_slice(self.obj, 0, n), eager_only=True)
