"""PySpark DataFrames: pages are ``select(columns).offset(offset).limit(limit)`` (Spark >= 3.4), counts
``limit(cap + 1).count()``; Arrow comes from ``toArrow`` (Spark >= 4) of a bounded ``limit``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..sources import FullScanError, Source, narwhals_schema

__all__ = ["SparkSource"]


def _arrow(frame: Any) -> Any:
    to_arrow = getattr(frame, "toArrow", None)
    if to_arrow is not None:
        return to_arrow()
    import pyarrow as pa

    return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)


class SparkSource(Source):
    def columns(self) -> list[str]:
        return list(self.obj.columns)

    def schema(self) -> list[dict[str, Any]]:
        try:
            return narwhals_schema(self.obj, [t for _, t in self.obj.dtypes])
        except Exception:  # a Spark type narwhals does not map: keep Spark's names
            return [{"name": n, "dtype": t, "native_dtype": t} for n, t in self.obj.dtypes]

    def count_upto(self, n: int) -> int:
        return int(self.obj.limit(n).count())

    def _projected(self, columns: list[str] | None) -> Any:
        return self.obj if columns is None else self.obj.select(*columns)

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        frame = self._projected(columns)
        if offset:
            if not hasattr(frame, "offset"):
                raise FullScanError(
                    "this Spark has no DataFrame.offset (Spark < 3.4): a page at an offset would collect "
                    "every row before it; filter on a key column instead (e.g. df.where(df.id >= N))"
                )
            frame = frame.offset(offset)
        return _arrow(frame.limit(limit))

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        yield from _arrow(self._projected(columns).limit(max_rows)).to_batches(batch_rows)

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.limit(n))
