"""nbmcp.frames.digest: fingerprints change when the data changes."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa

from nbmcp import frames


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
