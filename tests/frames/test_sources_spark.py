"""The Spark adapter on a real local SparkSession (started once per test session): pages pushed down with
``offset().limit()``, counts capped with ``limit(cap + 1).count()``, a profile Spark computes, a bounded
Arrow export."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from nbmcp import frames

pytestmark = [pytest.mark.spark, pytest.mark.timeout(180)]
ROWS = 20_000


@pytest.fixture(scope="module")
def frame(spark: Any) -> Any:
    return spark.range(0, ROWS).selectExpr(
        "id",
        "CAST(id AS DOUBLE) * 0.5 AS x",
        "CASE id % 4 WHEN 0 THEN 'Oslo' WHEN 1 THEN 'Lima' WHEN 2 THEN 'Pune' END AS city",
    )


def test_pages_counts_profile_and_arrow(frame: Any) -> None:
    source = frames.source_for(frame, frames.Limits(count_cap=5_000, profile_rows=4_000, profile_seconds=120))
    assert source.kind == "pyspark.sql.DataFrame" and source.columns() == ["id", "x", "city"]
    assert [c["dtype"] for c in source.schema()] == ["Int64", "Float64", "String"]
    assert source.page(12_345, 3, ["city", "id"]) == [
        {"city": "Lima", "id": 12_345},
        {"city": "Pune", "id": 12_346},
        {"city": None, "id": 12_347},
    ]
    assert source.page(ROWS + 5, 10) == []
    with pytest.raises(ValueError, match=r"valid columns: \['id', 'x', 'city'\]"):
        source.page(0, 5, ["nope"])

    info = frames.describe(source)
    assert info["kind"] == "pyspark.sql.DataFrame" and info["shape"][1] == 3
    assert info["count_capped"] is True and info["total_rows"] is None  # counting stopped at 5,000
    profile = info["profile"]
    assert profile["sampled"] is True and profile["rows_profiled"] == 4_000
    by_name = {c["name"]: c for c in profile["columns"]}
    assert by_name["id"]["max"] == 3_999 and by_name["id"]["mean"] == 1_999.5 and by_name["city"]["nulls"] == 1_000
    assert {t["value"] for t in by_name["city"].get("top", [])} >= {"Oslo", "Lima", "Pune"}, profile

    export = frames.arrow_export(source, 50_000)
    assert export.truncated and 0 < export.bytes <= 50_000
    assert pa.ipc.open_stream(export.ipc).read_all().column("id").to_pylist()[:2] == [0, 1]
    exact = frames.source_for(frame, frames.Limits(count_cap=1_000_000))
    assert exact.count().rows == ROWS
