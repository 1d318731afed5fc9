"""nbmcp.frames.digest: fingerprints change when the data changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from nbmcp import frames
from nbmcp.frames import digest


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


@pytest.fixture
def rows_hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of everything pandas hashes (a spy: the real function still does the work)."""
    seen: list[int] = []
    real = pd.util.hash_pandas_object

    def spy(obj, *args, **kwargs):
        seen.append(len(obj))
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(pd.util, "hash_pandas_object", spy)
    return seen


def test_a_big_frame_is_fingerprinted_by_a_bounded_sample(rows_hashed: list[int]) -> None:
    n = 5_000_000
    df = pd.DataFrame({"a": np.arange(n), "b": np.zeros(n)}, index=pd.RangeIndex(n, name="order"))
    before = frames.fingerprint(df)
    assert rows_hashed and max(rows_hashed) == digest.SAMPLE_ROWS  # never the whole 5M rows
    assert frames.fingerprint(df) == before

    positions = digest.sample_positions(n)
    assert len(positions) == digest.SAMPLE_ROWS and positions[0] == 0 and positions[-1] == n - 1
    for position in (0, positions[200], n - 1):  # a change in a sampled row, at either end or between
        changed = df.copy()
        changed.iloc[position, 1] = 1.0
        assert frames.fingerprint(changed) != before, position
    assert frames.fingerprint(df.iloc[:-1]) != before  # a row fewer
    assert frames.fingerprint(df.astype({"b": "float32"})) != before  # a dtype
    assert frames.fingerprint(df.rename(columns={"b": "c"})) != before  # a name
    assert frames.fingerprint(df.rename_axis("id")) != before  # the index's name
    # The documented blind spot: an in-place edit of a row that is not sampled, same shape and dtypes.
    unsampled = next(p for p in range(1000, n) if p not in set(positions))
    edited = df.copy()
    edited.iloc[unsampled, 1] = 1.0
    assert frames.fingerprint(edited) == before


@pytest.mark.parametrize("kind", ["polars", "pyarrow"])
def test_polars_and_arrow_big_frames_are_sampled_too(kind: str) -> None:
    n = 2_000_000
    values = np.zeros(n)
    make = (lambda v: pl.DataFrame({"a": v})) if kind == "polars" else (lambda v: pa.table({"a": v}))
    before = frames.fingerprint(make(values))
    middle = digest.sample_positions(n)[300]
    changed = values.copy()
    changed[middle] = 1.0
    assert frames.fingerprint(make(changed)) != before
    assert frames.fingerprint(make(values[:-1])) != before
    assert frames.fingerprint(make(values.astype("float32"))) != before
