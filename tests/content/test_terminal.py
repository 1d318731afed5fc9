"""nbmcp.content.terminal: ANSI escapes and carriage-return progress bars."""

from __future__ import annotations

from nbmcp import content


def test_strip_ansi_and_join_stream_text():
    assert content.strip_ansi("\x1b[1;32mok\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07") == "ok link"
    progress = ["start\n", "  0%\r", " 50%\r", "100%\r", "\n", "done\n"]
    assert content.join_stream_text(progress) == "start\n100%\ndone\n"
    assert content.join_stream_text(["a\r\nb"]) == "a\nb"
