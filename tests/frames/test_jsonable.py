"""nbmcp.frames.jsonable: awkward cell values become strict JSON."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl

from nbmcp import frames


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
