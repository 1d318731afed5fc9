"""DuckDB relations: pages are ``project(columns).limit(limit, offset)``, run by DuckDB (a Parquet scan
skips to the row groups it needs); counts are ``limit(cap + 1)`` then ``count(*)``, or exact from Parquet metadata
for a plain ``read_parquet``; Arrow streams are DuckDB's own record-batch readers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..sources import Source, narwhals_schema

__all__ = ["DuckDBSource"]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(result: Any) -> Any:
    """DuckDB's ``arrow()`` gives a Table in some versions and a RecordBatchReader in others."""
    read_all = getattr(result, "read_all", None)
    return read_all() if read_all is not None else result


class DuckDBSource(Source):
    def columns(self) -> list[str]:
        return list(self.obj.columns)

    def schema(self) -> list[dict[str, Any]]:
        return narwhals_schema(self.obj, [str(t) for t in self.obj.types])

    def known_rows(self) -> int | None:
        """Exact for ``SELECT *`` over one Parquet scan: DuckDB answers ``count(*)`` from the files' metadata."""
        extra = self.state.extra
        if "metadata_rows" not in extra:
            from ..query.sql_duckdb import relation_plan

            with self.state.lock:
                try:
                    plain = relation_plan(self.obj).plain_parquet
                except Exception:  # a relation DuckDB cannot describe as SQL: counted the ordinary way
                    plain = False
                extra["metadata_rows"] = int(self.obj.aggregate("count(*)").fetchall()[0][0]) if plain else None
        return extra["metadata_rows"]

    def count_upto(self, n: int) -> int:
        with self.state.lock:
            return int(self.obj.limit(n).aggregate("count(*)").fetchall()[0][0])

    def _projected(self, columns: list[str] | None) -> Any:
        return self.obj if columns is None else self.obj.project(", ".join(_quoted(c) for c in columns))

    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> Any:
        relation = self._projected(columns).limit(limit, offset)
        # DuckDB >= 2 names it to_arrow_table; 1.x fetch_arrow_table
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        with self.state.lock:
            return _table(fetch())

    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[Any]:
        relation = self._projected(columns).limit(max_rows)
        fetch = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
        yield from fetch(batch_rows)

    def profile_frame(self, n: int) -> Any:
        import narwhals as nw

        return nw.from_native(self.obj.limit(n))
