"""An interactive table view of an exposed frame, as an MCP App (the ``io.modelcontextprotocol/ui`` extension).

``view_object(name)`` is a read-only tool whose result carries ``_meta.ui.resourceUri = "ui://nbmcp/table"``,
a markdown table of the first page (what hosts without Apps show, and what the model reads) and the page as
structured content. A host with Apps renders the ``ui://nbmcp/table`` resource, a self-contained HTML page
(``table_app.html`` next to this module: no network, no CDN), in a sandboxed iframe and hands it the tool
result; the page pages, selects columns and re-reads through ``read_rows`` over the app bridge (JSON-RPC over
``postMessage``). Sorting orders the page on screen (a server-side sort would sort the whole frame on every
page, in the user's kernel).

The SDK's ``mcp.server.apps.Apps`` extension serves the resource and advertises the extension; the tool itself
goes through nbmcp's call pipeline like the other built-in read tools, with the same ``_meta.ui`` on its
definition and on its result.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.types import CallToolResult, TextContent

from ... import frames
from ..registry import ToolSpec
from .objects import ObjectViews, builtin_tool

__all__ = ["APP_MIME_TYPE", "TABLE_URI", "TOOL_META", "apps_extension", "table_html", "view_tool"]

TABLE_URI = "ui://nbmcp/table"
TOOL_META = {"ui": {"resourceUri": TABLE_URI}}
DEFAULT_PAGE = 25


def table_html() -> str:
    """The page (package data, read once per server)."""
    return resources.files(__package__).joinpath("table_app.html").read_text(encoding="utf-8")


def apps_extension() -> Apps:
    """The SDK's Apps extension with the ``ui://nbmcp/table`` resource: pass it to ``MCPServer(extensions=...)``."""
    apps = Apps()
    apps.add_html_resource(
        TABLE_URI,
        table_html(),
        name="nbmcp-table",
        title="Table view",
        description="Interactive view of an exposed frame: paging, sorting, column selection (via read_rows)",
        prefers_border=True,
    )
    return apps


def view_tool(views: ObjectViews) -> ToolSpec:
    """The ``view_object`` tool over ``views``."""

    def view_object(name: str, offset: int = 0, limit: int = DEFAULT_PAGE) -> Any:
        """Show an exposed DataFrame as an interactive table (paging, sorting, choosing columns) where the
        client can show MCP Apps; elsewhere, its first rows as a markdown table.

        Args:
            name: the exposed name, as listed by list_objects.
            offset: index of the first row shown (0-based).
            limit: rows per page, at most 1000.
        """
        markdown, info = views.rows(name, offset, limit)
        schema = frames.schema(views.lookup(name))
        info = {**info, "all_columns": [{"name": c["name"], "dtype": c["dtype"]} for c in schema]}
        hint = f"\n\n(Interactive view: {TABLE_URI}; more rows with read_rows({name!r}, offset, limit).)"
        return CallToolResult(content=[TextContent(type="text", text=markdown + hint)], structured_content=info)

    return builtin_tool(view_object, read_only=True, budget_structured=False)
