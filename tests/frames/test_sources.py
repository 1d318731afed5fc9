"""The adapter interface over real backends: DuckDB, polars (eager and lazy), pyarrow (tables, readers,
datasets), Ibis and Dask. Pages are pushed down (row counts observed at the source), counts are capped,
profiles and Arrow exports are bounded."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from nbmcp import frames

ROWS = 20_000
ROW_GROUP = 1_000


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "t.parquet"
    table = pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "x": pa.array([i * 0.5 for i in range(ROWS)]),
            "city": pa.array(["Oslo", "Lima", "Pune", None] * (ROWS // 4)),
        }
    )
    pq.write_table(table, path, row_group_size=ROW_GROUP)
    return path


def _duckdb(path: Path):
    import duckdb

    return duckdb.connect().read_parquet(str(path))


def _ibis(path: Path):
    import ibis

    return ibis.duckdb.connect().read_parquet(str(path))


def _dask(path: Path):
    import dask.dataframe as dd

    return dd.read_parquet(str(path), split_row_groups=True)


BACKENDS = {
    "pandas": lambda p: pd.read_parquet(p),
    "polars": lambda p: pl.read_parquet(p),
    "arrow-table": lambda p: pq.read_table(p),
    "polars-lazy": lambda p: pl.scan_parquet(p),
    "arrow-dataset": lambda p: pads.dataset(str(p)),
    "duckdb": _duckdb,
    "ibis": _ibis,
    "dask": _dask,
}
KINDS = {
    "pandas": "pandas.DataFrame",
    "polars": "polars.DataFrame",
    "arrow-table": "pyarrow.Table",
    "polars-lazy": "polars.LazyFrame",
    "arrow-dataset": "pyarrow.dataset.Dataset",
    "duckdb": "duckdb.DuckDBPyRelation",
    "ibis": "ibis.Table",
    "dask": "dask.dataframe.DataFrame",
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, parquet: Path) -> tuple[str, object]:
    return request.param, BACKENDS[request.param](parquet)


def test_every_backend_pages_counts_and_describes_the_same_way(backend: tuple[str, object]) -> None:
    name, obj = backend
    source = frames.source_for(obj, frames.Limits(count_cap=5_000))
    assert source.kind == KINDS[name]
    assert source.columns() == ["id", "x", "city"]
    assert [c["dtype"] for c in source.schema()] == ["Int64", "Float64", "String"]

    page = source.page(12_345, 3, ["city", "id"])
    assert page == [{"city": "Lima", "id": 12_345}, {"city": "Pune", "id": 12_346}, {"city": None, "id": 12_347}]
    assert source.page(ROWS + 5, 10) == []

    info = frames.describe(frames.source_for(obj, frames.Limits(count_cap=5_000, profile_rows=4_000)))
    assert set(info) >= {"kind", "shape", "total_rows", "count_capped", "columns", "memory_bytes", "head", "profile"}
    assert info["head"][0] == {"id": 0, "x": 0.0, "city": "Oslo"} and len(info["head"]) == 10
    # Counts are free (in memory, or in the Parquet metadata of a plain scan): exact, whatever the cap
    if name in ("pandas", "polars", "arrow-table", "arrow-dataset", "polars-lazy", "duckdb"):
        assert info["total_rows"] == ROWS and info["count_capped"] is False
    else:  # counting stops at the cap and says so (a page seen past it raises what is known)
        assert info["total_rows"] is None and info["count_capped"] is True and info["rows_at_least"] > 5_000
    profile = info["profile"]
    assert profile["rows_profiled"] == 4_000 and profile["sampled"] is True and "first 4,000 rows" in profile["note"]
    by_name = {c["name"]: c for c in profile["columns"]}
    assert by_name["id"]["min"] == 0 and by_name["id"]["max"] == 3_999 and by_name["id"]["mean"] == 1_999.5
    assert by_name["id"]["distinct"] == 4_000 and by_name["city"]["nulls"] == 1_000
    assert by_name["city"]["distinct"] in (3, 4)  # backends differ on whether null is a distinct value
    assert {t["value"] for t in by_name["city"]["top"]} >= {"Oslo", "Lima", "Pune"}


FILTERED = {  # every row passes the filter: a count that scanned would be exact, one that stopped is capped
    "polars-lazy": lambda lazy: lazy.filter(pl.col("id") >= 0),
    "arrow-dataset": lambda dataset: dataset.filter(pads.field("id") >= 0),
    "duckdb": lambda relation: relation.filter("id >= 0"),
}


@pytest.mark.parametrize("name", list(FILTERED))
def test_a_plain_parquet_scan_is_counted_from_metadata_and_a_filtered_one_is_capped(parquet: Path, name: str) -> None:
    plain = BACKENDS[name](parquet)
    limits = frames.Limits(count_cap=5_000)
    source = frames.source_for(plain, limits)
    assert source.shape() == [ROWS, 3]  # known before anything counted: the index and variable lists show it
    assert source.count().rows == ROWS and source.count().text() == f"{ROWS:,}"  # exact although the cap is lower
    assert frames.describe(frames.source_for(plain, limits))["total_rows"] == ROWS
    filtered = frames.source_for(FILTERED[name](plain), limits)
    assert filtered.shape()[0] is None
    count = filtered.count()  # counting stops at the cap instead of scanning the whole file
    assert count.rows is None and count.text() == "more than 5,000", count
    # A full page ending at the last row proves the total: the count is exact, not "more than" the last row.
    assert [r["id"] for r in filtered.page(ROWS - 3, 3, ["id"])] == [ROWS - 3, ROWS - 2, ROWS - 1]
    assert filtered.count().rows == ROWS and filtered.count().text() == f"{ROWS:,}"


def test_exact_count_below_the_cap_and_a_short_last_page_is_exact(backend: tuple[str, object]) -> None:
    _, obj = backend
    source = frames.source_for(obj, frames.Limits(count_cap=1_000_000))
    assert source.count().rows == ROWS and source.count().text() == f"{ROWS:,}"
    capped = frames.source_for(obj, frames.Limits(count_cap=100))
    if capped.lazy and capped.known_rows() is None:
        assert capped.count().text() == "more than 100"
        assert len(capped.page(ROWS - 2, 10)) == 2
        assert capped.count().rows == ROWS  # the short last page proved the total


def test_bad_columns_list_what_exists(backend: tuple[str, object]) -> None:
    _, obj = backend
    source = frames.source_for(obj)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['nope'\]; valid columns: \['id', 'x', 'city'\]"):
        source.page(0, 5, ["nope"])
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        source.page(0, 5000)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        source.page(-1, 5)


def test_arrow_export_stops_at_the_byte_cap(backend: tuple[str, object]) -> None:
    _, obj = backend
    source = frames.source_for(obj)
    export = frames.arrow_export(source, 40_000)
    assert export.truncated and 0 < export.bytes <= 40_000 and export.rows < ROWS
    table = pa.ipc.open_stream(export.ipc).read_all()
    assert table.num_rows == export.rows and table.column("id").to_pylist()[:3] == [0, 1, 2]
    whole = frames.arrow_export(source, 10_000_000, ["id"])
    assert not whole.truncated and whole.rows == ROWS


def test_unknown_objects_are_refused_with_what_is_supported() -> None:
    with pytest.raises(TypeError, match=r"not a table: builtins.dict; nbmcp shows pandas .* DuckDB relations"):
        frames.source_for({"a": 1})
    assert not frames.is_source([1, 2])


def _counting_reader(batches: int, rows: int, produced: list[int]) -> pa.RecordBatchReader:
    schema = pa.schema([("i", pa.int64()), ("s", pa.string())])

    def generate():
        for b in range(batches):
            produced.append(b)
            start = b * rows
            yield pa.record_batch([pa.array(range(start, start + rows)), pa.array(["v" * 20] * rows)], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, generate())


def test_a_reader_is_buffered_up_to_the_cap_and_refuses_pages_past_it() -> None:
    produced: list[int] = []
    reader = _counting_reader(1_000, 1_000, produced)  # 1M rows if read to the end
    source = frames.source_for(reader, frames.Limits(max_resource_bytes=200_000))
    assert source.page(10, 2, ["i"]) == [{"i": 10}, {"i": 11}]
    assert len(produced) < 10  # only the buffered prefix was pulled from the stream
    assert source.count().capped
    with pytest.raises(frames.FullScanError, match=r"can be read only once.*filter"):
        source.page(900_000, 5)
    again = frames.source_for(reader, frames.Limits(max_resource_bytes=200_000))
    assert again.state is source.state and again.page(0, 1, ["i"]) == [{"i": 0}]  # the buffer is kept


def test_arrow_export_pulls_only_what_fits_from_a_lazy_stream() -> None:
    """A DuckDB relation over a counting Arrow stream: the export stops pulling batches at the cap."""
    import duckdb

    produced: list[int] = []
    reader = _counting_reader(500, 2_000, produced)  # 1M rows, ~30 MB if read whole
    relation = duckdb.connect().from_arrow(reader)
    export = frames.arrow_export(frames.source_for(relation), 256_000)
    assert export.truncated and export.bytes <= 256_000
    assert len(produced) < 50, f"{len(produced)} of 500 batches produced for a 256 kB export"


def test_dask_pages_compute_only_the_partitions_they_need() -> None:
    import dask
    import dask.dataframe as dd

    built: list[int] = []

    def part(i: int) -> pd.DataFrame:
        built.append(i)
        return pd.DataFrame({"i": range(i * 100, (i + 1) * 100)})

    frame = dd.from_map(part, list(range(200)))
    with dask.config.set(scheduler="synchronous"):
        source = frames.source_for(frame)
        assert source.page(1_250, 3) == [{"i": 1250}, {"i": 1251}, {"i": 1252}]
    assert 12 in built and max(built) < 40, f"built partitions {sorted(set(built))}"


def test_backends_are_never_imported_by_nbmcp() -> None:
    import subprocess

    code = (
        "import sys, json, nbmcp.frames as f, pyarrow as pa\n"
        "src = f.source_for(pa.table({'a': [1]})); f.describe(src); f.is_source(object())\n"
        "print(json.dumps([m for m in ('duckdb', 'polars', 'ibis', 'dask', 'pyspark') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_arrow_stream_is_a_capped_reader_duckdb_can_scan(parquet: Path) -> None:
    import duckdb

    source = frames.source_for(pl.scan_parquet(parquet))
    reader = frames.arrow_stream(source, 60_000, ["id", "city"])
    assert reader.schema.names == ["id", "city"]
    counted = duckdb.connect().from_arrow(reader).aggregate("count(*), max(id)").fetchall()[0]
    assert 0 < counted[0] < ROWS and counted[1] == counted[0] - 1  # the first rows, cut at the byte cap
    whole = frames.arrow_stream(source, 10_000_000, ["id"]).read_all()
    assert whole.num_rows == ROWS


def test_a_duckdb_page_reads_the_page_not_the_file(tmp_path: Path) -> None:
    """DuckDB's own profile of the page query: the scan that reads the data columns reads about one vector
    (2,048 rows) of 200,000, and the bytes read are a small part of the file."""
    import json

    import duckdb

    path = tmp_path / "wide.parquet"
    n = 200_000
    payload = pa.array([f"row {i} " + "x" * (i % 50) for i in range(n)])
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()), "payload": payload}), path, row_group_size=10_000)
    con = duckdb.connect()
    relation = con.read_parquet(str(path))
    con.execute("PRAGMA enable_profiling='json'")
    con.execute(f"PRAGMA profiling_output='{tmp_path / 'profile.json'}'")
    assert frames.source_for(relation).page(150_000, 3) == [
        {"id": 150_000 + i, "payload": f"row {150_000 + i} " + "x" * ((150_000 + i) % 50)} for i in range(3)
    ]
    profile = json.loads((tmp_path / "profile.json").read_text())

    def scans(node: dict) -> list[dict]:
        found = [node] if node.get("name") in ("PARQUET_SCAN", "TABLE_SCAN", "READ_PARQUET") else []
        return found + [s for child in node.get("children", []) for s in scans(child)]

    data_scans = [
        s
        for op in profile["operator"]
        for s in scans(op)
        if "payload" in str(s.get("extra_info", {}).get("Projections"))
    ]
    assert data_scans and all(s["intermediate_rows"] <= 4_096 for s in data_scans), data_scans
    assert profile["io"]["total_bytes_read"] < path.stat().st_size / 4


def test_the_adapter_cache_does_not_keep_objects_alive(parquet: Path) -> None:
    import gc
    import weakref

    lazy = pl.scan_parquet(parquet)
    source = frames.source_for(lazy)
    assert source.count().rows == ROWS
    again = frames.source_for(lazy)
    assert again.state is source.state and again.state.count is not None  # the count is kept per object
    gone = weakref.ref(lazy)
    del lazy, source, again
    gc.collect()
    assert gone() is None  # nothing in nbmcp held it
