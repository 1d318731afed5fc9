"""Terminal text made readable: ANSI escapes removed, carriage-return progress bars collapsed to their
last state — what a human sees in a terminal, not the bytes that drew it."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["join_stream_text", "strip_ansi"]

_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST (hyperlinks, titles)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves, OSC hyperlinks)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def join_stream_text(chunks: Iterable[str]) -> str:
    """Join stream chunks as a terminal would show them: ANSI stripped, and a line rewritten with
    ``\\r`` (progress bars) keeps only its last state."""
    text = strip_ansi("".join(chunks))
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(line)
    return "\n".join(lines)
