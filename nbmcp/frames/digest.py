"""A frame's content fingerprint, to tell subscribers that an exposed frame changed after a cell."""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

from narwhals.dependencies import get_pandas, is_pandas_dataframe, is_polars_dataframe

from .arrow import to_arrow_ipc
from .backends import frame_kind, require_frame
from .pages import shape

__all__ = ["fingerprint"]


def _pd_fingerprint(df: Any, h: Any) -> None:
    pd = get_pandas()
    hash_obj = pd.util.hash_pandas_object
    h.update(hash_obj(df.index, categorize=True).to_numpy().tobytes())
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        try:
            hashed = hash_obj(col, index=False)
        except TypeError:  # unhashable cells (lists, dicts): hash their text
            hashed = hash_obj(col.map(repr), index=False)
        h.update(hashed.to_numpy().tobytes())


def fingerprint(obj: Any) -> str:
    """A hex digest of the frame's content (values, names, dtypes, pandas index). Changes when the
    data changes. O(frame) (~100 ms per million rows); meant for subscribed objects only."""
    require_frame(obj)
    h = hashlib.blake2b(digest_size=16)
    h.update(frame_kind(obj).encode())
    h.update(repr(shape(obj)).encode())
    if is_pandas_dataframe(obj):
        h.update(repr([(str(c), str(t)) for c, t in zip(obj.columns, obj.dtypes, strict=True)]).encode())
        h.update(repr(list(obj.index.names)).encode())
        try:
            _pd_fingerprint(obj, h)
            return h.hexdigest()
        except Exception:
            pass
    elif is_polars_dataframe(obj):
        h.update(repr(list(obj.schema.items())).encode())
        try:
            h.update(obj.hash_rows(seed=0).to_numpy().tobytes())
            return h.hexdigest()
        except Exception:
            pass
    # the library's own hashing failed or does not exist (pyarrow): hash a serialisation instead
    try:
        h.update(to_arrow_ipc(obj))
    except Exception:
        try:
            h.update(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            h.update(f"id:{id(obj)}".encode())
    return h.hexdigest()
