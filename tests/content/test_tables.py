"""nbmcp.content.tables: live frames and HTML tables -> markdown plus structured rows."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbmcp import content
from nbmcp.content import convert, convert_mime_bundle
from tests.content.conftest import only_text


@pytest.mark.parametrize("lib", ["pandas", "polars", "pyarrow"])
def test_frame_is_markdown_head_and_structured(lib):
    data = {"n": list(range(100)), "s": [f"v|{i}" for i in range(100)]}
    obj = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[lib](data)
    conv = convert(obj)
    text = only_text(conv)
    lines = text.split("\n")
    assert lines[0] == "| n | s |"
    assert lines[2] == "| 0 | v\\|0 |"
    assert lines[21] == "| 19 | v\\|19 |"  # 20 rows
    assert lines[-1] == "100 rows x 2 columns (showing first 20)"
    s = conv.structured
    assert s["columns"] == ["n", "s"]
    assert s["dtypes"] == {"n": "Int64", "s": "String"}
    assert s["rows"][:2] == [{"n": 0, "s": "v|0"}, {"n": 1, "s": "v|1"}]
    assert len(s["rows"]) == 20
    assert s["total_rows"] == 100 and s["truncated"] is True
    small = convert(obj[:3] if lib != "pyarrow" else obj.slice(0, 3))
    assert small.structured["truncated"] is False
    assert small.content[0].text.endswith("3 rows x 2 columns (showing first 3)")


def test_wide_frame_shows_first_columns():
    df = pd.DataFrame({f"c{i}": [i] for i in range(100)})
    conv = convert(df)
    assert conv.content[0].text.split("\n")[0].count("|") == content.FRAME_MAX_COLUMNS + 1
    assert "first 40 of 100 columns" in conv.content[0].text
    assert len(conv.structured["columns"]) == 100
    assert list(conv.structured["rows"][0]) == conv.structured["shown_columns"]


def test_empty_frame():
    conv = convert(pd.DataFrame({"a": []}))
    assert only_text(conv) == "| a |\n| --- |\n\n0 rows x 1 columns (showing first 0)"
    assert conv.structured["rows"] == [] and conv.structured["total_rows"] == 0


def test_pandas_series_is_one_column_frame():
    conv = convert(pd.Series([3, 4], name="qty"))
    assert conv.structured["columns"] == ["qty"]
    assert conv.structured["rows"] == [{"qty": 3}, {"qty": 4}]
    counts = convert(pd.Series(["a", "b", "a"]).value_counts())
    assert counts.structured["rows"][0] == {"index": "a", "count": 2}


def test_pandas_html_bundle_becomes_markdown_table_once():
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    conv = convert_mime_bundle({"text/html": df._repr_html_(), "text/plain": repr(df)})
    text = only_text(conv)  # the html table only: text/plain is not sent as well
    assert text.split("\n") == [
        "| index | city | temp |",
        "| --- | --- | --- |",
        "| 0 | Oslo | 3.5 |",
        "| 1 | Lima | 19.0 |",
    ]
    assert conv.structured["columns"] == ["index", "city", "temp"]
    assert conv.structured["rows"][1] == {"index": 1, "city": "Lima", "temp": 19.0}
    assert conv.structured["total_rows"] == 2 and conv.structured["truncated"] is False


def test_truncated_pandas_html_reports_total_rows():
    df = pd.DataFrame({"a": range(1000)})
    conv = convert_mime_bundle({"text/html": df._repr_html_(), "text/plain": repr(df)})
    assert conv.structured["total_rows"] == 1000 and conv.structured["truncated"] is True
    assert all(r["a"] != "..." for r in conv.structured["rows"])
    assert "| ... | ... |" in conv.content[0].text
    assert conv.content[0].text.endswith("1000 rows (showing 10)")


def test_html_tables_with_named_index_multiindex_and_polars():
    grouped = pd.DataFrame({"k": ["x", "y", "x"], "v": [1, 2, 3]}).groupby("k").sum()
    conv = convert_mime_bundle({"text/html": grouped._repr_html_()})
    assert conv.structured["columns"] == ["k", "v"]
    assert conv.structured["rows"] == [{"k": "x", "v": 4}, {"k": "y", "v": 2}]
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]), index=["r"])
    assert convert_mime_bundle({"text/html": multi._repr_html_()}).structured["columns"] == [
        "index",
        "a_x",
        "a_y",
    ]
    conv = convert_mime_bundle({"text/html": pl.DataFrame({"a": [1], "b": ["q"]})._repr_html_()})
    assert conv.structured["rows"] == [{"a": 1, "b": "q"}]
    assert conv.structured["dtypes"] == {"a": "i64", "b": "str"}
