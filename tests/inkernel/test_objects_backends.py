"""Lazy and out-of-core sources exposed in a real kernel (``%load_ext nbmcp``), read by the SDK client in both
protocol eras: DuckDB, polars lazy, Arrow dataset, Ibis, Dask; the Arrow resource's byte cap; a broken
object that must not break the index."""

from __future__ import annotations

import base64
import json

import pyarrow as pa
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
ROWS = 200_000
LAZY = ["rel", "lazy", "dataset", "itable", "dframe"]
CAP = 300_000


@pytest.fixture(scope="module")
def server(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("data") / "t.parquet"
    config = {
        "max_resource_bytes": CAP,
        "count_cap": 50_000,
        "profile_rows": 20_000,
        "profile_seconds": 120.0,  # top values are asserted: never skipped on a slow machine
    }
    setup = f"""
import duckdb, ibis, pandas as pd, polars as pl, pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
import dask.dataframe as dd
pq.write_table(
    pa.table({{"id": pa.array(range({ROWS}), pa.int64()), "city": ["Oslo", "Lima"] * ({ROWS} // 2)}}),
    {str(path)!r}, row_group_size=10_000,
)
rel = duckdb.connect().read_parquet({str(path)!r})
lazy = pl.scan_parquet({str(path)!r})
dataset = ds.dataset({str(path)!r})
itable = ibis.duckdb.connect().read_parquet({str(path)!r})
dframe = dd.read_parquet({str(path)!r}, split_row_groups=True)
for _name in {LAZY!r}:
    nbmcp.expose(variable=_name)

class Broken:
    @property
    def shape(self):
        raise RuntimeError("shape boom")
    def __len__(self):
        raise RuntimeError("len boom")
nbmcp.expose(Broken(), "broken")

big = pd.DataFrame({{"i": range(1_000_000), "s": ["abcdefgh"] * 1_000_000}})
nbmcp.expose(big, "big")

produced = []
_schema = pa.schema([("i", pa.int64()), ("s", pa.string())])
def _batches():
    for b in range(1_000):  # 2M rows, ~40 MB if read whole
        produced.append(b)
        ids = pa.array(range(b * 2_000, (b + 1) * 2_000))
        yield pa.record_batch([ids, pa.array(["v" * 10] * 2_000)], schema=_schema)
def _stream():  # a DuckDB relation over a one-shot stream that counts the batches it produces
    return duckdb.connect().from_arrow(pa.RecordBatchReader.from_batches(_schema, _batches()))
stream = _stream()
nbmcp.expose(variable="stream")
"""
    return start_server(kernel, setup, config=config, timeout=120)


@pytest.mark.parametrize("mode", MODES)
async def test_a_broken_object_stays_in_its_own_entry(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        index = json.loads((await client.read_resource("nbmcp://objects")).contents[0].text)
        by_name = {o["name"]: o for o in index["objects"]}
        assert "shape boom" in by_name["broken"]["error"] and by_name["broken"]["kind"].endswith("Broken")
        assert by_name["rel"]["kind"] == "duckdb.DuckDBPyRelation" and by_name["rel"]["shape"][1] == 2
        for name in ("dataset", "rel", "lazy"):  # plain Parquet scans: the metadata's count, exact for free
            assert by_name[name]["shape"] == [ROWS, 2], name
        listed = await client.call_tool("list_objects", {})
        assert not listed.is_error
        assert {o["name"] for o in listed.structured_content["objects"]} >= {*LAZY, "broken", "big"}
        with pytest.raises(MCPError) as raised:
            await client.read_resource("nbmcp://objects/broken")
        assert raised.value.code == INTERNAL_ERROR and "shape boom" in raised.value.message


@pytest.mark.parametrize("mode", MODES)
async def test_every_backend_pages_at_an_offset_the_same_way(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        for name in LAZY:
            contents = (await client.read_resource(f"nbmcp://objects/{name}/rows/123456/3")).contents
            page = json.loads(contents[0].text)
            assert [r["id"] for r in page["rows"]] == [123_456, 123_457, 123_458], name
            assert page["columns"] == ["id", "city"]
            if name in ("dataset", "rel", "lazy") or mode != MODES[0]:
                # Parquet metadata of a plain scan; or the first run's short last page made the (cached) count exact
                assert page["total_rows"] == ROWS and page["count_capped"] is False
            else:  # the count stops at c.NbMCP.count_cap; the page itself proved more rows than that
                assert page["total_rows"] is None and page["count_capped"] is True, name
                assert page["rows_at_least"] > 123_458 and "more than" in contents[1].text
            rows = await client.call_tool("read_rows", {"name": name, "offset": ROWS - 2, "limit": 5})
            last = [{"id": ROWS - 2, "city": "Oslo"}, {"id": ROWS - 1, "city": "Lima"}]
            assert rows.structured_content["rows"] == last
            assert rows.structured_content["total_rows"] == ROWS  # a short last page makes the total exact
            bad = await client.call_tool("read_rows", {"name": name, "columns": ["nope"]})
            assert bad.is_error and "valid columns: ['id', 'city']" in text_of(bad)


@pytest.mark.parametrize("mode", MODES)
async def test_summaries_look_the_same_and_carry_a_bounded_profile(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        keys = None
        for name in [*LAZY, "big"]:
            summary = (await client.read_resource(f"nbmcp://objects/{name}")).contents
            info = json.loads(summary[1].text)
            keys = keys or set(info)
            assert set(info) - {"rows_at_least"} == keys - {"rows_at_least"}, name
            profile = info["profile"]
            assert profile["sampled"] is True and profile["rows_profiled"] == 20_000, name
            column, values = ("s", {"abcdefgh"}) if name == "big" else ("city", {"Oslo", "Lima"})
            strings = next(c for c in profile["columns"] if c["name"] == column)
            assert strings["distinct"] == len(values) and {t["value"] for t in strings["top"]} == values, name
            assert "first 20,000 rows" in summary[0].text and f"| {column} |" in summary[0].text
        described = await client.call_tool("describe_object", {"name": "lazy"})
        assert described.structured_content["kind"] == "polars.LazyFrame"
        assert described.structured_content["profile"]["columns"][0]["max"] == 19_999


@pytest.mark.parametrize("mode", MODES)
async def test_the_arrow_resource_stops_at_the_byte_cap(server: dict, kernel: KernelHandle, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        contents = (await client.read_resource("nbmcp://objects/big/arrow")).contents
        table = pa.ipc.open_stream(base64.b64decode(contents[0].blob)).read_all()
        note = json.loads(contents[1].text)
        assert note["truncated"] is True and note["rows"] == table.num_rows and 0 < table.num_rows < 1_000_000
        assert note["bytes"] <= CAP and note["estimated_bytes"] > CAP
        assert "max_resource_bytes" in note["message"] and "nbmcp://objects/big/rows/" in note["message"]

        kernel.run("produced.clear(); stream = _stream()").raise_for_error()
        contents = (await client.read_resource("nbmcp://objects/stream/arrow")).contents
        assert json.loads(contents[1].text)["truncated"] is True
        assert kernel.value("len(produced)") < 50  # of 1,000 batches: the stream was abandoned at the cap

        small = (await client.read_resource("nbmcp://objects/dataset/arrow")).contents
        assert json.loads(small[1].text)["truncated"] is True  # 200,000 rows do not fit 300 kB either


def test_subscriptions_fingerprint_a_lazy_source_without_running_it() -> None:
    import duckdb

    from nbmcp.inkernel.protocol.notifications import fingerprint

    produced: list[int] = []

    def batches():
        for i in range(10):
            produced.append(i)
            yield pa.record_batch([pa.array([i])], names=["i"])

    relation = duckdb.connect().from_arrow(pa.RecordBatchReader.from_batches(pa.schema([("i", pa.int64())]), batches()))
    assert fingerprint(relation) == fingerprint(relation) != fingerprint(duckdb.connect().sql("select 1"))
    assert produced == []  # the one-shot stream behind it was not read (DuckDB's repr would run the query)
