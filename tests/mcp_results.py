"""Reading what an MCP SDK client got back: the small helpers every test file would otherwise write again."""

from __future__ import annotations

from typing import Any

from mcp.types import TextContent

MODES = ["legacy", "auto"]
"""The SDK client's modes a client-facing test runs in: the legacy initialize handshake, and "auto" (the client
picks the newest era the server offers)."""
MODES_PINNED = ["legacy", "2026-07-28"]
"""The same two eras with the 2026 one named, not negotiated: for features only that era has."""


def text_of(result: Any) -> str:
    """The text blocks of a tool result (``CallToolResult``), joined by newlines; other blocks are left out."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))
