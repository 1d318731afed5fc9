"""Dask DataFrames: pages through partition lengths. Lengths are computed by Dask (from Parquet metadata
where Dask can), a few partitions at a time and only as far as a page or a capped count needs, then kept;
a page computes only the partition(s) holding its rows, projected to the chosen columns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..sources import Source, narwhals_schema

__all__ = ["DaskSource"]

_LENGTH_CHUNK = max(4, 2 * (os.cpu_count() or 2))  # partitions whose lengths are computed together


def _arrow(pandas_frame: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(pandas_frame, preserve_index=False)


class DaskSource(Source):
    @property
    def _lengths(self) -> list[int]:
        return self.state.extra.setdefault("lengths", [])

    def columns(self) -> list[str]:
        return [str(c) for c in self.obj.columns]

    def schema(self) -> list[dict[str, Any]]:
        return narwhals_schema(self.obj, [str(t) for t in self.obj.dtypes])

    def _lengths_until(self, rows: int) -> list[int]:
        """Partition lengths, computed in chunks until their sum reaches ``rows`` or partitions run out."""
        with self.state.lock:
            n = self.obj.npartitions
            while len(self._lengths) < n and sum(self._lengths) < rows:
                start = len(self._lengths)
                chunk = self.obj.partitions[start : start + _LENGTH_CHUNK]
                self._lengths.extend(int(x) for x in chunk.map_partitions(len).compute())
            return list(self._lengths)

    def known_rows(self) -> int | None:
        if len(self._lengths) == self.obj.npartitions:
            return sum(self._lengths)
        return None

    def count_upto(self, n: int) -> int:
        return min(n, sum(self._lengths_until(n)))

    def _projected(self, columns: list[str] | None) -> Any:
        return self.obj if columns is None else self.obj[columns]

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        import pandas as pd

        lengths = self._lengths_until(offset + limit)
        frame = self._projected(columns)
        parts, start = [], 0
        for i, length in enumerate(lengths):
            lo, hi = max(offset - start, 0), min(offset + limit - start, length)
            if hi > lo:
                parts.append(frame.get_partition(i).compute().iloc[lo:hi])
            start += length
            if start >= offset + limit:
                break
        if not parts:  # past the end: an empty table with the frame's dtypes
            return _arrow(pd.DataFrame({c: pd.Series(dtype=t) for c, t in frame.dtypes.items()}))
        return _arrow(pd.concat(parts) if len(parts) > 1 else parts[0])

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        frame = self._projected(columns)
        for i in range(frame.npartitions):
            yield from _arrow(frame.get_partition(i).compute()).to_batches(batch_rows)

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.head(n, npartitions=-1, compute=False))
