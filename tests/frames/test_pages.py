"""nbmcp.frames.pages on real pandas, polars and pyarrow frames: shape, schema, pages, summary."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbmcp import frames


def test_shape_and_schema(frame):
    assert frames.shape(frame) == (3, 4)
    cols = frames.schema(frame)
    assert [c["name"] for c in cols] == ["i", "f", "s", "t"]
    dtypes = {c["name"]: c["dtype"] for c in cols}
    assert dtypes["i"] == "Int64"
    assert dtypes["f"] == "Float64"
    assert dtypes["s"] == "String"
    assert dtypes["t"].startswith("Datetime")
    assert all(isinstance(c["native_dtype"], str) and c["native_dtype"] for c in cols)


def test_page_is_json_safe(frame):
    rows = frames.page(frame)
    assert len(rows) == 3
    json.dumps(rows, allow_nan=False)  # strict JSON: no NaN, no datetime objects
    assert rows[0] == {"i": 1, "f": 1.5, "s": "a", "t": "2024-01-01T12:00:00"}
    assert rows[1]["f"] is None  # NaN
    assert rows[1]["t"] is None  # NaT / null
    assert type(rows[0]["i"]) is int


def test_page_offset_limit_columns(frame):
    assert frames.page(frame, offset=1, limit=1) == [{"i": 2, "f": None, "s": "b|c", "t": None}]
    assert frames.page(frame, offset=2, limit=5, columns=["s", "i"]) == [{"s": "line\nbreak", "i": 3}]
    assert list(frames.page(frame, columns=["t", "i"])[0]) == ["t", "i"]
    assert frames.page(frame, offset=3) == []
    assert frames.page(frame, offset=10_000) == []


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"offset": -1}, r"^offset must be >= 0"),
        ({"limit": 0}, r"^limit must be between 1 and 1000"),
        ({"limit": 1001}, r"^limit must be between 1 and 1000"),
        ({"offset": "3"}, r"^offset must be an integer"),
        (
            {"columns": ["i", "nope"]},
            r"^columns: unknown column\(s\) \['nope'\]; valid columns: \['i', 'f', 's', 't'\]",
        ),
        ({"columns": []}, r"^columns must not be empty"),
    ],
)
def test_page_bad_arguments(frame, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        frames.page(frame, **kwargs)


def test_pandas_index_is_data():
    sales = pd.DataFrame({"region": ["n", "s", "n"], "amount": [1, 2, 3]})
    grouped = sales.groupby("region").sum()
    assert frames.shape(grouped) == (2, 1)  # the native shape
    cols = frames.schema(grouped)
    assert cols[0] == {"name": "region", "dtype": "String", "native_dtype": "str", "index": True}
    assert frames.page(grouped) == [{"region": "n", "amount": 4}, {"region": "s", "amount": 2}]
    assert frames.page(grouped, columns=["amount"]) == [{"amount": 4}, {"amount": 2}]
    assert frames.to_arrow_table(grouped).column_names == ["region", "amount"]
    # a default RangeIndex is not data
    assert [c["name"] for c in frames.schema(sales)] == ["region", "amount"]


def test_memory_bytes(frame):
    size = frames.memory_bytes(frame)
    assert isinstance(size, int) and size > 0


def test_summary(frame):
    info = frames.summary(frame)
    assert info["kind"] == frames.frame_kind(frame)
    assert info["shape"] == [3, 4]
    assert [c["name"] for c in info["columns"]] == ["i", "f", "s", "t"]
    assert info["memory_bytes"] > 0
    assert info["head"] == frames.page(frame, 0, 10)
    json.dumps(info, allow_nan=False)


class _Counted:
    """A cell value that counts how often it is turned into text."""

    calls = 0

    def __repr__(self) -> str:
        type(self).calls += 1
        return "counted"


def test_page_converts_only_the_page():
    # Structure: a page of 10 rows turns exactly 10 cells of this column into text, of 200k rows.
    cell = _Counted()
    df = pd.DataFrame({"n": np.arange(200_000), "obj": [cell] * 200_000})
    _Counted.calls = 0
    rows = frames.page(df, offset=150_000, limit=10)
    assert [r["n"] for r in rows] == list(range(150_000, 150_010))
    assert all(r["obj"] == "counted" for r in rows)
    assert _Counted.calls == 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lib", ["pandas", "polars", "pyarrow"])
def test_page_cost_does_not_grow_with_frame(lib):
    n = 2_000_000
    data = {"a": np.arange(n), "b": np.linspace(0, 1, n), "c": np.arange(n) % 7}
    obj = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[lib](data)
    frames.page(obj, 0, 50)  # warm up
    start = time.perf_counter()
    rows = frames.page(obj, 1_000_000, 50)
    page_time = time.perf_counter() - start
    assert rows[0]["a"] == 1_000_000 and len(rows) == 50
    start = time.perf_counter()
    if lib == "pandas":
        obj.to_dict("records")
    elif lib == "polars":
        obj.to_dicts()
    else:
        obj.to_pylist()
    full_time = time.perf_counter() - start
    # converting the whole frame takes seconds; a page takes milliseconds. 20x is a generous margin.
    assert page_time * 20 < full_time, (page_time, full_time)
