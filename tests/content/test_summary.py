"""summary_line: one line for a listing, a whole first sentence or a cut at a word boundary with "…"."""

from __future__ import annotations

from nbmcp.content.summary import summary_line


def test_the_first_sentence_on_one_line() -> None:
    assert summary_line("Run code in the kernel.\n    Returns stream output.") == "Run code in the kernel."
    assert summary_line("Tables named by variable, e.g. sales. Then more.") == "Tables named by variable, e.g. sales."
    assert summary_line("no full stop at all") == "no full stop at all"
    assert summary_line(None) == summary_line("") == ""


def test_a_long_sentence_is_cut_at_a_word_with_an_ellipsis() -> None:
    text = "Run one read-only SQL SELECT (DuckDB dialect; Spark SQL for Spark frames) over the exposed frames,\nby it."
    cut = summary_line(text, 80)
    assert len(cut) <= 80 and cut.endswith("…") and not cut.endswith(",…")
    assert text.replace("\n", " ").startswith(cut[:-1])
    assert cut[:-1].split()[-1] in text.split()  # the last word whole
