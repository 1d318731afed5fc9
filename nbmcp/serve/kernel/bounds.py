"""How much of one output ``nbmcp serve`` keeps: the head and the tail of a long text, and a line where the rest
was cut.

A cell can print far more than anyone reads (100 MB of log). serve keeps at most ``limit`` characters of each output
— the first 60% and the last 40% of the limit, the shape of the output budget, so what the client was sent is part
of what is kept — and says in the text itself how much it cut. Stream text is bounded as it arrives
(:class:`StreamText`: memory stays O(limit) however much the cell prints); whole outputs are bounded by
:func:`bound_output` before the session notebook records them (:mod:`..notebook.recorder`). ``nbmcp://outputs/{id}``
serves the same kept text. The limit is ``nbmcp serve --record-output-limit`` (default 1,000,000 characters: an output a
client may want whole, a long log, stays whole; a cell printing 30 MB is kept as 1 MB).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "MIN_OUTPUT_LIMIT",
    "StreamText",
    "bound_output",
    "bound_text",
    "cut_note",
]

DEFAULT_OUTPUT_LIMIT = 1_000_000  # 50 times the default output budget
MIN_OUTPUT_LIMIT = 1_000
HEAD_SHARE = 0.6  # as the output budget: the first 60%, the last 40%
NOTE_ROOM = 300  # a text this much over the limit has been cut already: its note
#: Larger binary values (images, base64) are not recorded: a value cannot be cut and stay an image.
BINARY_LIMIT_FACTOR = 5
_TEXT_MIME_PREFIXES = ("text/",)
_TEXT_MIMES = {"application/javascript", "image/svg+xml"}


def _split(limit: int) -> tuple[int, int]:
    head = int(limit * HEAD_SHARE)
    return head, limit - head


def cut_note(cut: int, limit: int) -> str:
    """The line that stands where ``cut`` characters of an output were left out."""
    head, tail = _split(limit)
    return (
        f"\n[nbmcp: {cut:,} characters cut here; serve keeps the first {head:,} and the last {tail:,} characters "
        f"of an output (--record-output-limit {limit:,})]\n"
    )


class StreamText:
    """The text of one stream output, kept to its head and tail while chunks arrive: never more than ``limit``
    characters (plus the note), and a large chunk is never copied whole."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head_size, self.tail_size = _split(limit)
        self.head = ""
        self.tail = ""  # while nothing is cut, head + tail is the whole text
        self.cut = 0

    def add(self, text: str) -> None:
        if not self.cut and len(self.head) + len(self.tail) + len(text) <= self.limit:
            if len(self.head) < self.head_size:
                room = self.head_size - len(self.head)
                self.head += text[:room]
                text = text[room:]  # at most the tail's share is left: the whole is within the limit
            self.tail += text
            return
        start = 0
        if len(self.head) < self.head_size:
            start = self.head_size - len(self.head)
            self.head += text[:start]
        rest = len(text) - start
        if rest >= self.tail_size:
            self.cut += len(self.tail) + rest - self.tail_size
            self.tail = text[len(text) - self.tail_size :]
        elif rest > 0:
            joined = self.tail + text[start:]
            drop = max(0, len(joined) - self.tail_size)
            self.cut += drop
            self.tail = joined[drop:]

    def text(self) -> str:
        if not self.cut:
            return self.head + self.tail
        return self.head + cut_note(self.cut, self.limit) + self.tail


def bound_text(text: str, limit: int) -> tuple[str, int]:
    """``text`` cut to its head and tail (with the note) if it is longer than ``limit``; and how much was cut."""
    if len(text) <= limit + NOTE_ROOM:  # within the limit, or kept to it already (with its note)
        return text, 0
    kept = StreamText(limit)
    kept.add(text)
    return kept.text(), kept.cut


def _is_text_mime(mime: str) -> bool:
    return mime.startswith(_TEXT_MIME_PREFIXES) or mime in _TEXT_MIMES


def bound_output(output: dict[str, Any], limit: int, *, keep_binary: bool = False) -> tuple[dict[str, Any], int]:
    """An nbformat output with each text in it cut to ``limit`` characters (stream text, text-like mime values, a
    traceback's lines), and binary values over ``BINARY_LIMIT_FACTOR * limit`` characters left out with a note in
    ``text/plain`` (unless ``keep_binary``: the client still gets a large image, downscaled); and how many characters
    were cut. The output itself is returned when nothing is cut."""
    kind = output.get("output_type")
    cut = 0
    if kind == "stream":
        text = output.get("text", "")
        if isinstance(text, list):
            text = "".join(text)
        kept, cut = bound_text(text, limit)
        return (type(output)({**output, "text": kept}), cut) if cut else (output, 0)
    if kind == "error":
        lines = list(output.get("traceback") or [])
        kept, cut = bound_text("\n".join(lines), limit)
        evalue, evalue_cut = bound_text(str(output.get("evalue", "")), limit)
        if not cut and not evalue_cut:
            return output, 0
        return type(output)({**output, "traceback": kept.split("\n"), "evalue": evalue}), cut + evalue_cut
    data = output.get("data")
    if not isinstance(data, dict):
        return output, 0
    bounded: dict[str, Any] = {}
    dropped: list[str] = []
    for mime, value in data.items():
        if isinstance(value, list):
            value = "".join(str(v) for v in value)
        if not isinstance(value, str):  # JSON values (application/json): measured as JSON would be too big to cut
            bounded[mime] = value
            continue
        if _is_text_mime(mime):
            bounded[mime], n = bound_text(value, limit)
            cut += n
        elif not keep_binary and len(value) > BINARY_LIMIT_FACTOR * limit:
            dropped.append(f"{mime} of {len(value):,} characters")
            cut += len(value)
        else:
            bounded[mime] = value
    if not cut:
        return output, 0
    if dropped:
        note = f"[nbmcp: not recorded: {', '.join(dropped)} (over {BINARY_LIMIT_FACTOR * limit:,} characters)]"
        plain = bounded.get("text/plain")
        bounded["text/plain"] = f"{plain}\n{note}" if plain else note
    return type(output)({**output, "data": bounded}), cut  # a NotebookNode stays one
