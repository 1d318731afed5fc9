"""nbmcp.frames.backends: which objects are frames, their kind and column names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbmcp import frames


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


def test_import_does_not_import_pandas_or_polars():
    code = (
        "import sys, nbmcp.frames as f; "
        "assert f.is_frame([1]) is False; "
        "print(sorted(m for m in ('pandas', 'polars', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_unique_names():
    assert frames.unique_names(["a", "b", "a", "a"]) == ["a", "b", "a.1", "a.2"]
    assert frames.unique_names(["a", "a", "a.1"]) == ["a", "a.2", "a.1"]  # a suffix already taken is skipped
    assert frames.unique_names([]) == []
