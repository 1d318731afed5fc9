"""Ibis tables: pages are ``select(columns).limit(limit, offset=offset)``, compiled to the backend's SQL;
Arrow streams are consecutive pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..sources import Source, narwhals_schema

__all__ = ["IbisSource"]


class IbisSource(Source):
    def columns(self) -> list[str]:
        return list(self.obj.columns)

    def schema(self) -> list[dict[str, Any]]:
        return narwhals_schema(self.obj, [str(t) for t in self.obj.schema().types])

    def count_upto(self, n: int) -> int:
        return int(self.obj.limit(n).count().execute())

    def _projected(self, columns: list[str] | None) -> Any:
        return self.obj if columns is None else self.obj.select(*columns)

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        return self._projected(columns).limit(limit, offset=offset).to_pyarrow()

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        # Pages of batch_rows, each its own pushed-down query: Ibis' streaming call depends on the driver
        # (Ibis 12 calls a DuckDB 1.x method that DuckDB 2 removed), a page query works on every backend.
        for offset in range(0, max_rows, batch_rows):
            table = self.slice_arrow(offset, min(batch_rows, max_rows - offset), columns)
            yield from table.to_batches()
            if table.num_rows < batch_rows:
                return

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.limit(n))
