"""A frame's fingerprint, to tell subscribers that an exposed frame changed after a cell.

It runs after every cell for each subscribed frame, so its cost must not grow with the frame: hashing a 1 GB
frame whole took 6.5 to 9.7 s, during which subscribing (and the cell's end) waited. A frame of up to
:data:`FULL_ROWS` rows is hashed whole; a bigger one by its kind, shape, column names and dtypes (the pandas
index names too) and a fixed sample of :data:`SAMPLE_ROWS` rows (the first, the last, and rows spread evenly
between them), values and pandas index labels both: milliseconds for any size.

What such a fingerprint misses: an in-place change to rows that are not sampled, keeping the shape and the
dtypes (``df.loc[12_345, "price"] = 0`` on a frame of millions of rows). It catches new or removed rows or
columns, renamed columns, changed dtypes, a changed first or last row, a sorted or replaced frame, and a new
object bound to the name (almost always, through the sampled rows). A subscriber that must see every edit
re-reads the frame.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any

from narwhals.dependencies import get_pandas

from .arrow import to_arrow_ipc
from .backends import frame_kind, require_frame
from .pages import shape

__all__ = ["FULL_ROWS", "HASHERS", "SAMPLE_ROWS", "fingerprint", "sample_positions"]

FULL_ROWS = 4_096
"""Frames with at most this many rows are hashed whole (well under a millisecond per column)."""
SAMPLE_ROWS = 512
"""Rows hashed of a bigger frame: 64 at each end, the rest spread evenly."""
_ENDS = 64


def sample_positions(rows: int) -> list[int]:
    """The row positions a frame of ``rows`` rows is fingerprinted by: all of them up to :data:`FULL_ROWS`, else
    :data:`SAMPLE_ROWS` of them, the same for the same ``rows`` (a fingerprint compares like with like)."""
    if rows <= FULL_ROWS:
        return list(range(rows))
    middle = SAMPLE_ROWS - 2 * _ENDS
    step = (rows - 2 * _ENDS) / middle
    spread = [_ENDS + int(i * step) for i in range(middle)]
    return [*range(_ENDS), *spread, *range(rows - _ENDS, rows)]


def _pandas(df: Any, h: Any, positions: list[int], whole: bool) -> Any:
    """Hash a pandas frame's dtypes, index names and sampled rows (index labels too); the sample, should that fail."""
    h.update(repr([(str(c), str(t)) for c, t in zip(df.columns, df.dtypes, strict=True)]).encode())
    h.update(repr(list(df.index.names)).encode())
    sample = df if whole else df.iloc[positions]
    hash_obj = get_pandas().util.hash_pandas_object
    try:
        h.update(hash_obj(sample.index, categorize=True).to_numpy().tobytes())
        for i in range(sample.shape[1]):
            col = sample.iloc[:, i]
            try:
                hashed = hash_obj(col, index=False)
            except TypeError:  # unhashable cells (lists, dicts): hash their text
                hashed = hash_obj(col.map(repr), index=False)
            h.update(hashed.to_numpy().tobytes())
    except Exception:
        return sample
    return None


def _polars(df: Any, h: Any, positions: list[int], whole: bool) -> Any:
    h.update(repr(list(df.schema.items())).encode())
    sample = df if whole else df[positions]
    try:
        h.update(sample.hash_rows(seed=0).to_numpy().tobytes())
    except Exception:
        return sample
    return None


def _pyarrow(table: Any, h: Any, positions: list[int], whole: bool) -> Any:
    h.update(str(table.schema).encode())
    return table if whole else table.take(positions)  # no hashing of its own: the serialisation below


# By kind (:data:`.kinds.BACKENDS`), every eager frame: hash the schema and the sampled rows with the library's own
# hashing, or return the sample for the serialisation below. Lazy backends are not fingerprinted: reading them
# costs a query of their backend, after every cell.
HASHERS: dict[str, Callable[[Any, Any, list[int], bool], Any]] = {
    "pandas.DataFrame": _pandas,
    "polars.DataFrame": _polars,
    "pyarrow.Table": _pyarrow,
}


def fingerprint(obj: Any) -> str:
    """A hex digest that changes when the frame changes, at a cost bounded whatever its size (see the module docs
    for what a sampled fingerprint can miss)."""
    require_frame(obj)
    kind = frame_kind(obj)
    h = hashlib.blake2b(digest_size=16)
    h.update(kind.encode())
    rows = shape(obj)[0]
    h.update(repr(shape(obj)).encode())
    positions = sample_positions(rows)
    sample = HASHERS[kind](obj, h, positions, len(positions) == rows)
    if sample is None:
        return h.hexdigest()
    # the library's own hashing failed or does not exist (pyarrow): hash a serialisation of the rows sampled
    try:
        h.update(to_arrow_ipc(sample))
    except Exception:
        try:
            h.update(pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            h.update(f"id:{id(obj)}".encode())
    return h.hexdigest()
