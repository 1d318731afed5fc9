"""polars ``LazyFrame``: pages are ``select(columns).slice(offset, limit)``, which polars pushes into the
scan (a Parquet scan reads only the row groups it needs). A bare Parquet scan's row count comes from the files'
metadata; any other plan is counted up to the cap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from narwhals.dependencies import get_polars

from ..sources import Source, narwhals_schema

__all__ = ["PolarsLazySource"]


class PolarsLazySource(Source):
    def _schema(self) -> Any:
        return self.obj.collect_schema()

    def columns(self) -> list[str]:
        return list(self._schema().names())

    def schema(self) -> list[dict[str, Any]]:
        return narwhals_schema(self.obj, [str(t) for t in self._schema().dtypes()])

    def known_rows(self) -> int | None:
        """Exact for a bare Parquet scan: polars answers ``len()`` from the files' metadata."""
        extra = self.state.extra
        if "metadata_rows" not in extra:
            extra["metadata_rows"] = int(self.obj.select(get_polars().len()).collect().item()) if self._bare() else None
        return extra["metadata_rows"]

    def _bare(self) -> bool:
        """The plan is one Parquet scan and nothing else: no filter, slice, join or computed column (which would
        make counting read rows)."""
        try:
            lines = self.obj.explain(optimized=False).strip().splitlines()
        except Exception:  # a plan polars cannot describe now (a file gone): counted the ordinary way
            return False
        attributes = ("PROJECT */", "ESTIMATED ROWS:", "ROW_INDEX:")
        scan, *rest = lines or [""]
        return scan.startswith("Parquet SCAN [") and all(line.startswith(attributes) for line in rest)

    def count_upto(self, n: int) -> int:
        pl = get_polars()
        return int(self.obj.head(n).select(pl.len()).collect().item())

    def _projected(self, columns: list[str] | None) -> Any:
        return self.obj if columns is None else self.obj.select(columns)

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        return self._projected(columns).slice(offset, limit).collect().to_arrow()

    def slice_records(self, offset: int, limit: int, columns: list[str] | None) -> list[dict[str, Any]]:
        return self._projected(columns).slice(offset, limit).collect().to_dicts()  # no Arrow round trip

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        frame = self._projected(columns).head(max_rows)
        collect_batches = getattr(frame, "collect_batches", None)
        if collect_batches is not None:  # polars >= 1.31 streams; older polars builds the bounded head
            for chunk in collect_batches(chunk_size=batch_rows):
                yield from chunk.to_arrow().to_batches()
            return
        yield from frame.collect().to_arrow().to_batches(batch_rows)

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.head(n))
