"""nbmcp.frames.arrow: whole-frame Arrow export."""

from __future__ import annotations

import math

import pyarrow as pa

from nbmcp import frames


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
