"""Frames as Arrow, for clients that want bulk data: a bounded record-batch stream of any source
(:func:`arrow_export`, :func:`arrow_stream`), and the whole-frame export of an eager frame (:func:`to_arrow_table`,
:func:`to_arrow_ipc`, which build the whole frame: callers bound the size first).

pyarrow is imported only here, and only when Arrow data is produced.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import narwhals as nw
from narwhals.dependencies import is_pyarrow_table

from .backends import prepared_frame, require_frame
from .sources import Source

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "ArrowExport",
    "Base64Sink",
    "CappedBatches",
    "arrow_export",
    "arrow_stream",
    "to_arrow_ipc",
    "to_arrow_table",
]


def to_arrow_table(obj: Any) -> pyarrow.Table:
    """The whole frame as a ``pyarrow.Table`` (pandas index as leading columns, names as in
    :func:`nbmcp.frames.schema`)."""
    require_frame(obj)
    if is_pyarrow_table(obj):
        return prepared_frame(obj)
    return nw.from_native(prepared_frame(obj), eager_only=True).to_arrow()


def to_arrow_ipc(obj: Any) -> bytes:
    """The whole frame as an Arrow IPC stream (read back with ``pyarrow.ipc.open_stream``)."""
    import pyarrow as pa

    table = to_arrow_table(obj)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@dataclass(frozen=True)
class ArrowExport:
    """An Arrow IPC stream built under a byte cap, and what it holds. ``ipc`` is the stream's bytes, or, from
    ``arrow_export(..., as_base64=True)``, empty: then ``ipc_base64`` is the stream as base64 text."""

    ipc: bytes
    rows: int
    batches: int
    bytes: int
    truncated: bool
    estimated_bytes: int | None
    ipc_base64: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "batches": self.batches,
            "bytes": self.bytes,
            "truncated": self.truncated,
            "estimated_bytes": self.estimated_bytes,
        }


_MIN_BATCH_ROWS = 1
_MAX_BATCH_ROWS = 65_536
_BATCHES_PER_CAP = 16  # a batch is at most ~1/16 of the cap: building one never overshoots it by much


class CappedBatches:
    """Record batches of a source, from its start, until the next one would pass ``max_bytes`` (the last one
    is cut to fit). The size is estimated *before* anything is built (eager frames: their memory; lazy
    sources: a row width from the schema), batches are sized so that each is a small part of the cap, and
    the backend's stream is closed at the cap: what is built stays O(cap), whatever the source's size.
    Iterate once; then ``rows``, ``bytes``, ``batches`` and ``truncated`` tell what was produced."""

    def __init__(self, source: Source, max_bytes: int, columns: list[str] | None = None) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.columns = source.check_columns(columns)
        self.row_bytes = source.row_bytes()
        memory = source.memory_bytes()
        self.estimated_bytes = memory if memory is not None and self.columns is None else None
        self.rows = self.bytes = self.batches = 0
        self.truncated = False

    def __iter__(self) -> Iterator[pyarrow.RecordBatch]:
        max_bytes, row_bytes = self.max_bytes, self.row_bytes
        batch_rows = max(_MIN_BATCH_ROWS, min(_MAX_BATCH_ROWS, max_bytes // _BATCHES_PER_CAP // row_bytes))
        # what a backend without a native stream may fetch in one query: generous (the width is a guess),
        # still O(cap); the byte count of each built batch is what stops the stream
        max_rows = 4 * (max_bytes // row_bytes) + 1
        stream = self.source.batches(self.columns, batch_rows, max_rows)
        try:
            for batch in stream:
                size = batch.nbytes
                if self.bytes + size > max_bytes:
                    self.truncated = True
                    part = _fit(batch, max_bytes - self.bytes)
                    if part is not None:
                        self._count(part)
                        yield part
                    return
                self._count(batch)
                yield batch
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # stop the backend's producer (a generator, a DuckDB reader) where we stopped reading
        if self.rows >= max_rows:  # stopped by the row bound: is there more?
            self.truncated = self.source.slice_arrow(self.rows, 1, self.columns).num_rows > 0

    def _count(self, batch: Any) -> None:
        self.rows += batch.num_rows
        self.bytes += batch.nbytes
        self.batches += 1


def _fit(batch: Any, room: int) -> Any:
    """The leading rows of ``batch`` that fit in ``room`` bytes (by its measured row width), or None."""
    fit = int(room // max(1, batch.nbytes // max(1, batch.num_rows)))
    part = batch.slice(0, fit)
    while fit > 0 and part.nbytes > room:  # rows are not all the same width: shrink until it fits
        fit = min(fit - 1, fit * room // part.nbytes)
        part = batch.slice(0, fit)
    return part if fit > 0 else None


def arrow_stream(source: Source, max_bytes: int, columns: list[str] | None = None) -> pyarrow.RecordBatchReader:
    """The source's rows as a ``pyarrow.RecordBatchReader`` that stops at ``max_bytes`` (see
    :class:`CappedBatches`); batches are built as the reader is read, e.g. by DuckDB scanning it."""
    import itertools

    import pyarrow as pa

    batches = iter(CappedBatches(source, max_bytes, columns))
    first = next(batches, None)
    if first is None:
        schema = source.slice_arrow(0, 0, source.check_columns(columns)).schema
        return pa.RecordBatchReader.from_batches(schema, iter(()))
    return pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))


def arrow_export(
    source: Source, max_bytes: int, columns: list[str] | None = None, *, as_base64: bool = False
) -> ArrowExport:
    """The source's rows as one Arrow IPC stream of at most ``max_bytes`` of batches (:class:`CappedBatches`),
    and what it holds.

    ``as_base64=True`` encodes the stream as it is written (:class:`Base64Sink`) and keeps only the base64 text
    (``ipc_base64``): what a JSON reply carries, built once, with no bytes copy of the stream alongside it. An
    MCP read then holds about 2.7 times the stream at its peak here (the encoded pieces and their join)
    instead of the 6 of buffer, bytes, base64 bytes and text.
    """
    import pyarrow as pa

    capped = CappedBatches(source, max_bytes, columns)
    sink: Any = Base64Sink() if as_base64 else pa.BufferOutputStream()
    writer = None
    for batch in capped:
        if writer is None:
            writer = pa.ipc.new_stream(sink, batch.schema)
        writer.write_batch(batch)
        del batch  # written: its memory can go before the next one is built
    if writer is None:
        writer = pa.ipc.new_stream(sink, source.slice_arrow(0, 0, capped.columns).schema)
    writer.close()
    ipc, text = (b"", sink.text()) if as_base64 else (sink.getvalue().to_pybytes(), "")
    return ArrowExport(
        ipc, capped.rows, capped.batches, capped.bytes, capped.truncated, capped.estimated_bytes, ipc_base64=text
    )


class Base64Sink:
    """A write-only file for ``pyarrow.ipc.new_stream`` that base64-encodes what is written, in pieces of a whole
    number of 3-byte groups (so the pieces join into one valid base64 text); :meth:`text` joins them once.

    Holds the encoded pieces (4/3 of the stream) and at most one piece of unencoded bytes, never the stream itself.
    """

    PIECE = 3 * 256 * 1024  # bytes encoded at a time: 768 KiB in, 1 MiB of text out

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._pending = bytearray()  # fewer than PIECE bytes not yet encoded
        self.size = 0  # bytes written
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        self.size += written
        if self._pending:  # top up the pending piece first, so pieces stay whole 3-byte groups
            take = min(written, self.PIECE - len(self._pending))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < self.PIECE:
                return written
            self._encode(self._pending)
            self._pending = bytearray()
        whole = len(view) - len(view) % self.PIECE
        for start in range(0, whole, self.PIECE):  # large bodies: encoded straight from Arrow's buffer
            self._encode(view[start : start + self.PIECE])
        self._pending += view[whole:]
        return written

    def _encode(self, chunk: Any) -> None:
        self._pieces.append(binascii.b2a_base64(chunk, newline=False).decode("ascii"))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def text(self) -> str:
        """Everything written, as one base64 string (the pieces are released)."""
        if self._pending:
            self._encode(self._pending)
            self._pending = bytearray()
        pieces, self._pieces = self._pieces, []
        return "".join(pieces)
