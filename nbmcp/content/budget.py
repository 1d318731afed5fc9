"""The output budget: one answer carries at most so many characters of text and so many images.

Over budget, the head and tail are kept, a note says how much was cut, and the full text is parked in an
:class:`OutputStore`, readable at ``nbmcp://outputs/{id}`` for a while — an assistant sees the shape of a
long output without drowning in it, and can still fetch all of it.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict

from mcp.types import AudioContent, ContentBlock, ImageContent, TextContent

from .converted import Converted, text_block

__all__ = ["DEFAULT_OUTPUT_BUDGET", "MAX_IMAGES", "OUTPUT_URI_PREFIX", "OutputStore", "apply_budget"]

DEFAULT_OUTPUT_BUDGET = 20_000
MAX_IMAGES = 8
OUTPUT_URI_PREFIX = "nbmcp://outputs/"


class OutputStore:
    """Full outputs that were cut, for ``nbmcp://outputs/{id}``. Thread-safe; least recently used
    entries go first once there are more than ``max_entries`` or more than ``max_chars`` characters
    (the newest entry always stays)."""

    def __init__(self, max_entries: int = 64, max_chars: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._items: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def put(self, text: str) -> str:
        """Keep ``text``; return its id (12 hex digits)."""
        output_id = secrets.token_hex(6)
        with self._lock:
            self._items[output_id] = text
            self._chars += len(text)
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self._chars > self.max_chars):
                _, old = self._items.popitem(last=False)
                self._chars -= len(old)
        return output_id

    def get(self, output_id: str) -> str:
        """The text kept under ``output_id``; ``KeyError`` naming the known ids if it is gone."""
        with self._lock:
            try:
                self._items.move_to_end(output_id)
                return self._items[output_id]
            except KeyError:
                known = list(self._items)
        raise KeyError(f"no output {output_id!r} (expired or never stored); known ids: {known}")

    def ids(self) -> list[str]:
        """The ids kept, least recently used first."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @staticmethod
    def uri(output_id: str) -> str:
        """The resource URI an output is readable at."""
        return OUTPUT_URI_PREFIX + output_id


def _snap_head(text: str, end: int) -> int:
    """Move a head cut back to a line end if one is near."""
    nl = text.rfind("\n", max(0, end - 200), end)
    return nl + 1 if nl >= 0 else end


def _snap_tail(text: str, start: int) -> int:
    """Move a tail cut forward to a line start if one is near."""
    nl = text.find("\n", start, start + 200)
    return nl + 1 if nl >= 0 else start


def _cut_text(content: list[ContentBlock], total: int, budget: int, output_uri: str | None) -> list[ContentBlock]:
    """``content`` with its text blocks cut to the first ~60% and last ~40% of ``budget`` characters
    (counted over all text blocks together) and a note where the cut is; other blocks stay in place."""
    head_end = int(budget * 0.6)
    tail_start = total - (budget - head_end)
    pos = 0
    note_at = -1
    pieces: list[tuple[ContentBlock, str, str]] = []  # (block, head, tail) of every block
    for block in content:
        if not isinstance(block, TextContent):
            pieces.append((block, "", ""))
            continue
        text, start = block.text, pos
        pos += len(text)
        head = text[: max(0, min(pos, head_end) - start)]
        if 0 < len(head) < len(text):
            head = head[: _snap_head(text, len(head))]
        tail = text[max(0, tail_start - start) :] if pos > tail_start else ""
        if tail and len(tail) < len(text):
            tail = text[_snap_tail(text, len(text) - len(tail)) :]
        if note_at < 0 and pos > head_end:
            note_at = len(pieces)
        pieces.append((block, head, tail))
    cut = total - sum(len(h) + len(t) for _, h, t in pieces)
    where = f"; full output: {output_uri}" if output_uri else ""
    note = f"\n[... {cut} characters cut{where} ...]\n"
    out: list[ContentBlock] = []
    for i, (block, head, tail) in enumerate(pieces):
        if not isinstance(block, TextContent):
            out.append(block)
            continue
        piece = head + (note if i == note_at else "") + tail
        if piece:
            out.append(block.model_copy(update={"text": piece}))
    return out


def _cap_images(content: list[ContentBlock], n_images: int) -> list[ContentBlock]:
    kept_images = 0
    capped: list[ContentBlock] = []
    for block in content:
        if isinstance(block, (ImageContent, AudioContent)):
            kept_images += 1
            if kept_images > MAX_IMAGES:
                continue
        capped.append(block)
    capped.append(text_block(f"[{n_images - MAX_IMAGES} more images not shown (at most {MAX_IMAGES})]"))
    return capped


def apply_budget(
    converted: Converted,
    budget: int = DEFAULT_OUTPUT_BUDGET,
    store: OutputStore | None = None,
    *,
    budget_structured: bool = True,
) -> Converted:
    """Cap ``converted`` to ``budget`` characters of text (all text blocks together) and
    :data:`MAX_IMAGES` images.

    Over budget: the first ~60% and last ~40% of the budget are kept, a line
    ``[... N characters cut; full output: nbmcp://outputs/<id> ...]`` marks the cut (the full text goes
    to ``store`` when given), ``truncated`` is set, and ``structured["truncated"] = True`` (structured
    content is created if there was none). Structured content whose JSON alone exceeds the budget is
    replaced by a stub that points to its full JSON in ``store`` — unless ``budget_structured`` is False:
    then only the text is budgeted and structured content that is already bounded (a page of rows a
    client asked for) is kept, whatever its size. Under budget and within the image cap, ``converted``
    is returned unchanged (the same object).
    """
    texts = [b.text for b in converted.content if isinstance(b, TextContent)]
    total = sum(len(t) for t in texts)
    n_images = sum(1 for b in converted.content if isinstance(b, (ImageContent, AudioContent)))
    structured_json = None
    if budget_structured and converted.structured is not None:
        structured_json = json.dumps(converted.structured, ensure_ascii=False, default=str)
        if len(structured_json) <= budget:
            structured_json = None
    if total <= budget and n_images <= MAX_IMAGES and structured_json is None:
        return converted

    output_uri = None
    content = list(converted.content)
    if total > budget:
        if store is not None:
            output_uri = OutputStore.uri(store.put("\n".join(texts)))
        content = _cut_text(content, total, budget, output_uri)
    if n_images > MAX_IMAGES:
        content = _cap_images(content, n_images)

    structured = converted.structured
    if structured_json is not None:
        stub_uri = output_uri
        if store is not None and total <= budget:
            stub_uri = OutputStore.uri(store.put(structured_json))
        structured = {
            "truncated": True,
            "structured_chars": len(structured_json),
            "note": "structured content exceeded the output budget",
        }
        if stub_uri:
            structured["output_uri"] = stub_uri
    elif total > budget:
        if structured is None:
            structured = {"truncated": True, "total_chars": total}
            if output_uri:
                structured["output_uri"] = output_uri
        else:
            structured = {**structured, "truncated": True}
            if output_uri:
                structured.setdefault("output_uri", output_uri)
    return Converted(
        content,
        structured,
        is_error=converted.is_error,
        truncated=converted.truncated or total > budget or n_images > MAX_IMAGES or structured_json is not None,
    )
