"""nbmcp.content.converted: the Converted result and its MCP CallToolResult."""

from __future__ import annotations

from mcp.types import CallToolResult

from nbmcp.content import convert


def test_to_result():
    result = convert({"a": 1}).to_result()
    assert isinstance(result, CallToolResult)
    assert result.structured_content == {"a": 1} and not result.is_error
    dumped = result.model_dump(by_alias=True, exclude_none=True)
    assert dumped["structuredContent"] == {"a": 1}
