"""nbmcp.frames on real pandas, polars and pyarrow frames."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbmcp import frames


def _data() -> dict:
    return {
        "i": [1, 2, 3],
        "f": [1.5, float("nan"), 3.25],
        "s": ["a", "b|c", "line\nbreak"],
        "t": [dt.datetime(2024, 1, 1, 12, 0), None, dt.datetime(2024, 3, 1)],
    }


@pytest.fixture(params=["pandas", "polars", "pyarrow"])
def frame(request):
    data = _data()
    if request.param == "pandas":
        return pd.DataFrame(data)
    if request.param == "polars":
        return pl.DataFrame(data, nan_to_null=False)
    return pa.table(data)


def test_is_frame_and_kind(frame):
    assert frames.is_frame(frame)
    kind = frames.frame_kind(frame)
    assert kind in {"pandas.DataFrame", "polars.DataFrame", "pyarrow.Table"}
    assert kind.split(".")[0] == type(frame).__module__.split(".")[0]


@pytest.mark.parametrize("obj", [None, 1, "x", [1, 2], {"a": [1]}, np.zeros((2, 2)), pd.Series([1])])
def test_not_frames(obj):
    assert not frames.is_frame(obj)
    with pytest.raises(TypeError, match="not a dataframe"):
        frames.shape(obj)


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


def test_json_safety_of_awkward_values():
    df = pd.DataFrame(
        {
            "np_int": np.array([1, 2], dtype=np.int64),
            "np_uint": np.array([7, 8], dtype=np.uint8),
            "dec": [__import__("decimal").Decimal("1.10"), None],
            "b": [b"\x00\x01", b"x"],
            "nested": [{"k": [np.int64(1), float("nan")]}, [dt.date(2024, 1, 2)]],
            "inf": [float("inf"), -float("inf")],
            "td": pd.to_timedelta(["1s", None]),
            "tz": pd.to_datetime(["2024-01-01T00:00:00Z", None]),
            "nullable": pd.array([1, None], dtype="Int64"),
        }
    )
    rows = frames.page(df)
    text = json.dumps(rows, allow_nan=False)
    assert rows[0]["np_int"] == 1 and type(rows[0]["np_int"]) is int
    assert rows[0]["np_uint"] == 7 and type(rows[0]["np_uint"]) is int
    assert rows[0]["dec"] == "1.10"
    assert rows[0]["b"] == repr(b"\x00\x01")
    assert rows[0]["nested"] == {"k": [1, None]}
    assert rows[1]["nested"] == ["2024-01-02"]
    assert rows[0]["inf"] == "inf" and rows[1]["inf"] == "-inf"
    assert rows[0]["td"] == "0 days 00:00:01" and rows[1]["td"] is None
    assert rows[0]["tz"] == "2024-01-01T00:00:00+00:00" and rows[1]["tz"] is None
    assert rows[1]["nullable"] is None
    assert "NaN" not in text


def test_polars_nested_and_dates():
    df = pl.DataFrame(
        {
            "d": [dt.date(2024, 1, 1), None],
            "l": [[1, 2], None],
            "st": [{"x": 1, "y": "a"}, {"x": None, "y": None}],
            "dur": [dt.timedelta(seconds=90), None],
        }
    )
    rows = frames.page(df)
    json.dumps(rows, allow_nan=False)
    assert rows[0] == {"d": "2024-01-01", "l": [1, 2], "st": {"x": 1, "y": "a"}, "dur": "0:01:30"}
    assert rows[1]["d"] is None and rows[1]["l"] is None


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


def test_pandas_awkward_column_names():
    multi = pd.DataFrame(
        np.arange(4).reshape(1, 4),
        columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]),
    )
    assert [c["name"] for c in frames.schema(multi)] == ["a_x", "a_y", "b_x", "b_y"]
    dup = pd.DataFrame([[1, 2, 3]], columns=["a", "a", 5])
    names = [c["name"] for c in frames.schema(dup)]
    assert names == ["a", "a.1", "5"]
    assert frames.page(dup) == [{"a": 1, "a.1": 2, "5": 3}]
    assert frames.to_arrow_table(dup).column_names == names


def test_series_as_frame():
    assert frames.page(frames.as_frame(pd.Series([1, 2], name="x"))) == [{"x": 1}, {"x": 2}]
    assert frames.page(frames.as_frame(pl.Series([1, 2]))) == [{"value": 1}, {"value": 2}]
    assert frames.page(frames.as_frame(pa.chunked_array([[1], [2]]))) == [{"value": 1}, {"value": 2}]
    counts = pd.Series(["a", "b", "a"]).value_counts()
    assert frames.page(frames.as_frame(counts)) == [{"index": "a", "count": 2}, {"index": "b", "count": 1}]
    assert frames.as_frame([1, 2]) is None


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


def test_markdown_table_escaping():
    text = frames.markdown_table(
        [{"a": "x|y", "b": "two\nlines"}, {"a": None, "b": "z" * 200}, {"a": {"k": 1}}],
        ["a", "b"],
    )
    lines = text.split("\n")
    assert lines[0] == "| a | b |"
    assert lines[1] == "| --- | --- |"
    assert lines[2] == "| x\\|y | two\\nlines |"
    assert len(lines) == 5  # the newline in a cell did not break the row
    long_cell = lines[3].split(" | ")[1].rstrip(" |")
    assert long_cell.endswith("…") and len(long_cell) == frames.MAX_CELL_CHARS
    assert lines[4] == '| {"k": 1} |  |'


def test_head_markdown(frame):
    text = frames.head_markdown(frame, 2)
    lines = text.split("\n")
    assert lines[0] == "| i | f | s | t |"
    assert len(lines) == 4
    assert lines[2].startswith("| 1 | 1.5 | a | 2024-01-01T12:00:00")
    empty = frames.head_markdown(pl.DataFrame({"a": []}))
    assert empty == "| a |\n| --- |"


def test_fingerprint_pandas_changes_on_mutation():
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    before = frames.fingerprint(df)
    assert frames.fingerprint(df.copy()) == before  # content, not identity
    df.loc[1, "b"] = "changed"
    after = frames.fingerprint(df)
    assert after != before
    df["c"] = 1.0
    assert frames.fingerprint(df) != after
    assert frames.fingerprint(df.rename(columns={"a": "A"})) != frames.fingerprint(df)
    assert frames.fingerprint(df.set_axis([10, 11, 12])) != frames.fingerprint(df)


def test_fingerprint_pandas_unhashable_cells():
    df = pd.DataFrame({"lists": [[1], [2]]})
    before = frames.fingerprint(df)
    df.at[0, "lists"] = [99]
    assert frames.fingerprint(df) != before


def test_fingerprint_polars_and_arrow():
    df = pl.DataFrame({"a": [1, 2, 3]})
    before = frames.fingerprint(df)
    assert frames.fingerprint(df.clone()) == before
    assert frames.fingerprint(df.with_columns(pl.col("a") * 2)) != before
    table = pa.table({"a": [1, 2, 3]})
    assert frames.fingerprint(table) == frames.fingerprint(pa.table({"a": [1, 2, 3]}))
    assert frames.fingerprint(table) != frames.fingerprint(pa.table({"a": [1, 2, 4]}))


def test_arrow_ipc_round_trip(frame):
    data = frames.to_arrow_ipc(frame)
    assert isinstance(data, bytes)
    table = pa.ipc.open_stream(data).read_all()
    assert table.column_names == ["i", "f", "s", "t"]
    assert table.num_rows == 3
    assert table.column("i").to_pylist() == [1, 2, 3]
    assert table.column("s").to_pylist() == ["a", "b|c", "line\nbreak"]
    missing = table.column("f").to_pylist()[1]
    assert missing is None or math.isnan(missing)  # pandas' NaN becomes an Arrow null
    assert isinstance(frames.to_arrow_table(frame), pa.Table)


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


def test_import_does_not_import_pandas_or_polars():
    code = (
        "import sys, nbmcp.frames as f; "
        "assert f.is_frame([1]) is False; "
        "print(sorted(m for m in ('pandas', 'polars', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
