"""The MCP session a stdio command serves when it cannot start: every answer says what went wrong.

A client launches ``nbmcp serve`` or ``nbmcp bridge`` and hides its stderr: a command that exits before the
handshake (no kernel to attach to, a wrong token, nothing at the URL) shows up only as "Connection closed".
So a stdio command that cannot start serves this session instead, until the client leaves: the handshake's
``instructions`` (both protocol eras) carry the message, one tool of that name describes it, and every tool
call, resource read and prompt is answered with it as an error. ``nbmcp serve`` also answers with a kernel's
start-up failure after the handshake (a kernel that did not come up): each tool call returns it as its error.
"""

from __future__ import annotations

import sys
from typing import Any

from .._version import __version__
from ..exceptions import NbMCPError

__all__ = ["TOOL_NAME", "StartupFailed", "run_unavailable", "serve_unavailable", "unavailable_server"]

TOOL_NAME = "startup_error"


class StartupFailed(NbMCPError):
    """A stdio command could not start (raised by ``nbmcp serve`` before it serves); ``str()`` says why and what
    to do. The command serves :func:`serve_unavailable` with it, then exits 1."""


def unavailable_server(name: str, message: str) -> Any:
    """A low-level MCP server named ``name`` whose every answer is ``message``."""
    import mcp.types as types
    from mcp import MCPError
    from mcp.server.lowlevel.server import Server

    said = f"nbmcp could not start: {message}"

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        tool = types.Tool(name=TOOL_NAME, description=said, input_schema={"type": "object", "properties": {}})
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(text=said)], is_error=True)

    async def refuse(ctx: Any, params: Any) -> Any:
        raise MCPError(code=types.INTERNAL_ERROR, message=said)

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[])

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[])

    async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[])

    return Server(
        name,
        version=__version__,
        instructions=said,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=refuse,
        on_list_prompts=list_prompts,
        on_get_prompt=refuse,
    )


async def serve_unavailable(name: str, message: str) -> None:
    """Serve stdio as :func:`unavailable_server` until the client leaves (stdin closes)."""
    from ..transport.stdio import bounded_stdio_server

    server = unavailable_server(name, message)
    async with bounded_stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run_unavailable(command: str, error: BaseException | str) -> int:
    """``nbmcp COMMAND`` could not start: say so on stderr (one line, at once: the client's log), serve the
    session that answers with it until the client leaves, and return the exit status, 1."""
    import anyio

    message = str(error)
    print(f"nbmcp {command}: {message}", file=sys.stderr, flush=True)
    anyio.run(serve_unavailable, f"nbmcp-{command}", message)
    return 1
