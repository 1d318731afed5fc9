"""One adapter per backend family behind :class:`nbmcp.frames.sources.Source`.

Which objects each adapter shows is said once, in :data:`nbmcp.frames.kinds.BACKENDS` (with the kind shown and how
SQL reaches them); an adapter module is imported only when an object of its backend exists, and imports its library
inside functions: nothing here loads a backend.

- :mod:`.eager` — pandas and polars DataFrames, pyarrow Tables (the in-memory frames);
- :mod:`.polars_lazy` — polars ``LazyFrame`` (``slice`` pushed into the scan);
- :mod:`.arrow_streams` — pyarrow ``RecordBatchReader`` (buffered prefix) and ``dataset.Dataset``;
- :mod:`.duckdb_relation` — DuckDB relations (``limit(n, offset)``);
- :mod:`.ibis_table` — Ibis tables (``limit(n, offset=)``, compiled by the backend);
- :mod:`.dask_frame` — Dask DataFrames (partition lengths);
- :mod:`.spark_frame` — PySpark DataFrames (``offset().limit()``).
"""
