"""How much of one output serve keeps: head and tail, a note where the rest was cut, never the whole in memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nbmcp.serve.kernel.bounds import StreamText, bound_output, cut_note


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(10, 300), chunks=st.lists(st.text(alphabet="ab\n", max_size=700), max_size=12))
def test_stream_text_keeps_exactly_the_head_and_tail_of_what_arrived(limit: int, chunks: list[str]) -> None:
    kept = StreamText(limit)
    for chunk in chunks:
        kept.add(chunk)
        assert len(kept.head) + len(kept.tail) <= limit  # never more than the limit, whatever arrived
    whole = "".join(chunks)
    if len(whole) <= limit:
        assert kept.text() == whole and kept.cut == 0
    else:
        head, tail = kept.head_size, kept.tail_size
        assert kept.cut == len(whole) - limit
        assert kept.text() == whole[:head] + cut_note(kept.cut, limit) + whole[-tail:]


def test_outputs_are_bounded_by_kind_and_a_kept_stream_is_not_cut_twice() -> None:
    stream = StreamText(1_000)
    stream.add("a" * 5_000)
    once = {"output_type": "stream", "name": "stdout", "text": stream.text()}
    assert bound_output(once, 1_000) == (once, 0)

    data = {"text/plain": "t" * 3_000, "image/png": "i" * 6_000}
    result, cut = bound_output({"output_type": "execute_result", "data": data, "metadata": {}}, 1_000)
    assert cut == 2_000 + 6_000 and "image/png" not in result["data"]
    assert "[nbmcp: 2,000 characters cut here" in result["data"]["text/plain"]
    assert "not recorded: image/png of 6,000 characters" in result["data"]["text/plain"]

    error = {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["l" * 900] * 4}
    error, cut = bound_output(error, 1_000)
    assert cut == 3_603 - 1_000 and "characters cut here" in "\n".join(error["traceback"])


def test_a_limit_too_small_to_keep_anything_is_refused_with_the_setting_named() -> None:
    import pytest

    from nbmcp.serve.provider import ServeOptions

    assert ServeOptions().record_output_limit == 1_000_000
    with pytest.raises(ValueError, match="--record-output-limit must be at least 1,000 characters"):
        ServeOptions(record_output_limit=10)
