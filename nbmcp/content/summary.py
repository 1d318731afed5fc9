"""One line that sums up a description (a tool's, an object's) for a listing: its first sentence, cut at a word
boundary with "…" when longer than the line allows, never in the middle of a word."""

from __future__ import annotations

import re

__all__ = ["summary_line"]

# the end of a sentence: . ! or ? then whitespace, but not after "e.g." / "i.e." / "etc."
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)[.!?](?=\s)")


def summary_line(text: str | None, width: int = 100) -> str:
    """The first sentence of ``text`` on one line (whitespace collapsed), at most ``width`` characters."""
    flat = " ".join((text or "").split())
    end = _SENTENCE_END.search(flat)
    sentence = flat[: end.end()] if end else flat
    if len(sentence) <= width:
        return sentence
    cut = sentence[: width - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-(") + "…"
