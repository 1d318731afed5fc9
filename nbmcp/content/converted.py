"""The result of every conversion — :class:`Converted`, MCP content plus structured data — and the small
builders the converters share: a text block, JSON text with structured content, a bounded repr."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp.types import (
    AudioContent,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
)

from .. import frames

__all__ = ["CONTENT_TYPES", "MAX_REPR_CHARS", "Converted", "bounded_repr", "json_converted", "text_block"]

MAX_REPR_CHARS = 2_000

# MCP content blocks: a value that already is one passes through unchanged
CONTENT_TYPES = (TextContent, ImageContent, AudioContent, EmbeddedResource, ResourceLink)


@dataclass
class Converted:
    """MCP content for one value / output / call."""

    content: list[ContentBlock]
    structured: dict[str, Any] | None = None
    is_error: bool = False
    truncated: bool = False

    def to_result(self) -> CallToolResult:
        return CallToolResult(content=list(self.content), structured_content=self.structured, is_error=self.is_error)

    def text(self) -> str:
        """All text blocks joined with newlines."""
        return "\n".join(b.text for b in self.content if isinstance(b, TextContent))

    def extend(self, other: Converted) -> None:
        """Append ``other``'s content; errors and truncation are sticky; structured: first wins."""
        self.content.extend(other.content)
        self.is_error = self.is_error or other.is_error
        self.truncated = self.truncated or other.truncated
        if self.structured is None:
            self.structured = other.structured


def text_block(text: str) -> TextContent:
    """One MCP text block."""
    return TextContent(type="text", text=text)


def bounded_repr(value: Any, limit: int = MAX_REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (with a note); never raises."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"{object.__repr__(value)} (repr failed: {type(exc).__name__}: {exc})"
    if len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit} more characters]"
    return text


def json_converted(value: Any) -> Converted:
    """Indented JSON text plus structured content (a dict as it is, anything else as ``{"result": value}``);
    values JSON cannot hold are made safe first (:func:`nbmcp.frames.to_jsonable`)."""
    safe = frames.to_jsonable(value)
    text = json.dumps(safe, indent=2, ensure_ascii=False, default=str)
    structured = safe if isinstance(safe, dict) else {"result": safe}
    return Converted([text_block(text)], structured)
