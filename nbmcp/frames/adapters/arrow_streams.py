"""pyarrow ``dataset.Dataset`` and ``RecordBatchReader``.

A dataset pages by skipping whole fragments and Parquet row groups by their metadata row counts, then
scans only the row group(s) holding the page. A ``RecordBatchReader`` can be read once only: its adapter
buffers a prefix (up to ``max_resource_bytes`` or ``count_cap`` rows, whichever comes first) the first time
it is read and answers from that buffer; a page past the buffer is refused (:class:`FullScanError`), since
the rest of the stream would have to be consumed to reach it. Expose a dataset to page everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from narwhals.dependencies import get_pyarrow

from ..sources import FullScanError, RowCount, Source, arrow_schema_entries

__all__ = ["ArrowDatasetSource", "ArrowReaderSource"]


def _dataset_module() -> Any:
    import sys

    return sys.modules.get("pyarrow.dataset")


def _take_columns(table: Any, columns: list[str] | None) -> Any:
    return table if columns is None else table.select(columns)


@dataclass
class _Buffer:
    batches: list[Any] = field(default_factory=list)
    rows: int = 0
    exhausted: bool = False


class ArrowReaderSource(Source):
    def _fill(self) -> _Buffer:
        """Read the stream's prefix once, up to the byte and row caps (the stream is consumed that far)."""
        with self.state.lock:
            buffer = self.state.extra.get("buffer")
            if buffer is not None:
                return buffer
            buffer = _Buffer()
            size = 0
            while size < self.limits.max_resource_bytes and buffer.rows <= self.limits.count_cap:
                try:
                    batch = self.obj.read_next_batch()
                except StopIteration:
                    buffer.exhausted = True
                    break
                buffer.batches.append(batch)
                buffer.rows += batch.num_rows
                size += batch.nbytes
            self.state.extra["buffer"] = buffer
            return buffer

    def _table(self) -> Any:
        pa = get_pyarrow()
        return pa.Table.from_batches(self._fill().batches, schema=self.obj.schema)

    def columns(self) -> list[str]:
        return list(self.obj.schema.names)

    def schema(self) -> list[dict[str, Any]]:
        return arrow_schema_entries(self.obj.schema)

    def known_rows(self) -> int | None:
        buffer = self._fill()
        return buffer.rows if buffer.exhausted else None

    def count_upto(self, n: int) -> int:
        buffer = self._fill()
        return min(n, buffer.rows + (0 if buffer.exhausted else 1))

    def count(self) -> RowCount:
        """Exact once the stream ended inside the buffer, else "more than" the buffered rows."""
        buffer = self._fill()
        return RowCount(buffer.rows, buffer.rows) if buffer.exhausted else RowCount(None, buffer.rows + 1)

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        buffer = self._fill()
        if not buffer.exhausted and offset + limit > buffer.rows:
            raise FullScanError(
                f"rows from {buffer.rows:,} on are not available: this RecordBatchReader can be read "
                f"only once and nbmcp buffered its first {buffer.rows:,} rows; reaching row "
                f"{offset:,} would consume the rest of the stream. Expose a pyarrow.dataset (or a filtered "
                "source, e.g. on a key column) to page further"
            )
        return _take_columns(self._table().slice(offset, limit), columns)

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        yield from _take_columns(self._table(), columns).to_batches(batch_rows)


class ArrowDatasetSource(Source):
    def columns(self) -> list[str]:
        return list(self.obj.schema.names)

    def schema(self) -> list[dict[str, Any]]:
        return arrow_schema_entries(self.obj.schema)

    def _parquet(self) -> bool:
        ds = _dataset_module()
        return isinstance(self.obj, ds.FileSystemDataset) and isinstance(self.obj.format, ds.ParquetFileFormat)

    def known_rows(self) -> int | None:
        # Parquet footers hold the row counts: counting reads metadata, not rows, unless the dataset was
        # filtered (Dataset.filter), when count_rows() would scan it all
        extra = self.state.extra
        if "metadata_rows" not in extra:
            extra["metadata_rows"] = int(self.obj.count_rows()) if self._parquet() and not self._filtered() else None
        return extra["metadata_rows"]

    def _filtered(self) -> bool:
        """Made by ``Dataset.filter``: its fragments cannot be listed, and their metadata counts precede the filter."""
        return (getattr(self.obj, "_scan_options", None) or {}).get("filter") is not None

    def count_upto(self, n: int) -> int:
        first = self.columns()[:1]
        seen = 0
        for batch in self.obj.to_batches(columns=first):
            seen += batch.num_rows
            if seen >= n:
                return n
        return seen

    def _pieces(self) -> Iterator[tuple[Any, int | None]]:
        """(piece, rows) in scan order: Parquet row groups with their metadata counts, other fragments whole; a
        filtered dataset whole (its rows are read up to the page)."""
        if self._filtered():
            yield self.obj, None
            return
        for fragment in self.obj.get_fragments():
            row_groups = getattr(fragment, "row_groups", None)
            if self._parquet() and row_groups is not None:
                for piece in fragment.split_by_row_group():
                    yield piece, piece.row_groups[0].num_rows
            else:
                yield fragment, None

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        pa = get_pyarrow()
        wanted: list[Any] = []
        start = 0  # row index of the current piece's first row
        end = offset + limit
        schema = self.obj.schema if columns is None else pa.schema([self.obj.schema.field(c) for c in columns])
        for piece, rows in self._pieces():
            if rows is not None and start + rows <= offset:
                start += rows  # skipped by its metadata: not read
                continue
            scan = {} if piece is self.obj else {"schema": self.obj.schema}  # a fragment reads in the dataset's schema
            for batch in piece.to_batches(columns=columns, **scan):
                n = batch.num_rows
                lo, hi = max(offset - start, 0), min(end - start, n)
                if hi > lo:
                    wanted.append(batch.slice(lo, hi - lo))
                start += n
                if start >= end:
                    break
            if start >= end:
                break
        return pa.Table.from_batches(wanted, schema=schema)

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        yield from self.obj.to_batches(columns=columns, batch_size=batch_rows)

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.head(n), eager_only=True)
