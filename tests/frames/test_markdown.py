"""nbmcp.frames.markdown: records and frame heads as markdown tables."""

from __future__ import annotations

import polars as pl

from nbmcp import frames


def test_markdown_table_escaping():
    text = frames.markdown_table(
        [{"a": "x|y", "b": "two\nlines"}, {"a": None, "b": "z" * 200}, {"a": {"k": 1}}],
        ["a", "b"],
    )
    lines = text.split("\n")
    assert lines[0] == "| a | b |"
    assert lines[1] == "| --- | --- |"
    assert lines[2] == "| x\\|y | two\\nlines |"
    assert len(lines) == 5  # the newline in a cell did not break the row
    long_cell = lines[3].split(" | ")[1].rstrip(" |")
    assert long_cell.endswith("…") and len(long_cell) == frames.MAX_CELL_CHARS
    assert lines[4] == '| {"k": 1} |  |'


def test_head_markdown(frame):
    text = frames.head_markdown(frame, 2)
    lines = text.split("\n")
    assert lines[0] == "| i | f | s | t |"
    assert len(lines) == 4
    assert lines[2].startswith("| 1 | 1.5 | a | 2024-01-01T12:00:00")
    empty = frames.head_markdown(pl.DataFrame({"a": []}))
    assert empty == "| a |\n| --- |"
