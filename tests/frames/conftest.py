"""Shared fixtures for the nbmcp.frames tests: one small frame per library."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest


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
