"""A whole frame as Arrow (a ``pyarrow.Table`` or an IPC stream), for clients that want bulk data.

pyarrow is imported only here, and only when Arrow data is produced. Callers bound the size before they
export: an export builds the whole frame in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import narwhals as nw
from narwhals.dependencies import is_pyarrow_table

from .backends import prepared_frame, require_frame

if TYPE_CHECKING:
    import pyarrow

__all__ = ["to_arrow_ipc", "to_arrow_table"]


def to_arrow_table(obj: Any) -> pyarrow.Table:
    """The whole frame as a ``pyarrow.Table`` (pandas index as leading columns, names as in
    :func:`nbmcp.frames.schema`)."""
    require_frame(obj)
    if is_pyarrow_table(obj):
        return prepared_frame(obj)
    return nw.from_native(prepared_frame(obj), eager_only=True).to_arrow()


def to_arrow_ipc(obj: Any) -> bytes:
    """The whole frame as an Arrow IPC stream (read back with ``pyarrow.ipc.open_stream``)."""
    import pyarrow as pa

    table = to_arrow_table(obj)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
