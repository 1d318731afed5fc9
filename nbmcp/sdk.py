"""What nbmcp needs from the MCP SDK beyond its public constructor, in one place.

Each helper here works around one thing the SDK does that a Jupyter library must not (configure root
logging) or does not do yet (announce list changes to handshake-era clients, name a request's connection,
register a request handler ``MCPServer`` has no decorator for).
The three servers (in-kernel, ``nbmcp serve``, the Jupyter Server extension) build their ``MCPServer``
through :func:`quiet_mcp_server`.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "ToolServer",
    "add_request_handler",
    "announce_list_changes",
    "connection_of",
    "quiet_mcp_server",
    "serve_streams",
    "unknown_tool_message",
]

S = TypeVar("S")


class ToolServer(MCPServer):
    """``MCPServer`` as nbmcp's servers serve tools.

    - A tool's description defaults to its docstring as :func:`inspect.getdoc` reads it: the SDK sends
      ``__doc__`` verbatim, and before Python 3.13 that keeps the source indentation of every line after the
      first.
    - A call to a tool that does not exist names the closest one (the SDK says only "Unknown tool: NAME"),
      as a tool error, as the SDK answers it.
    """

    def add_tool(
        self, fn: Callable[..., Any], name: str | None = None, title: str | None = None, description: str | None = None,
        *args: Any, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().add_tool(fn, name, title, description or inspect.getdoc(fn), *args, **kwargs)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if str(error) != f"Unknown tool: {name}":
                raise
            names = [tool.name for tool in await self.list_tools()]
            if name in names:  # the tool itself said so
                raise
            raise ToolError(unknown_tool_message(name, names)) from None


def unknown_tool_message(name: str, names: list[str]) -> str:
    """What a client hears for a call to the tool ``name`` that is not among ``names``."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"no tool {name!r}; did you mean {close[0]!r}?"
    shown = ", ".join(sorted(names)[:30]) + (", …" if len(names) > 30 else "")
    return f"no tool {name!r}; the tools are: {shown or '(none)'}"


def quiet_mcp_server(build: Callable[[], S]) -> S:
    """Build an ``MCPServer`` and undo what its constructor did to the root logger (a library configures none)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return build()
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def announce_list_changes(mcp: Any) -> None:
    """Advertise ``listChanged`` for tools, resources and prompts to handshake-era clients.

    The SDK advertises them only when the caller passes ``NotificationOptions`` to its low-level server,
    which ``MCPServer`` does not let us do; nbmcp sends those notifications, so it must say so.
    """
    from mcp.server.lowlevel.server import NotificationOptions

    lowlevel = mcp._lowlevel_server
    original = lowlevel.create_initialization_options

    def create_initialization_options(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original(notification_options or NotificationOptions(True, True, True), *args, **kwargs)

    lowlevel.create_initialization_options = create_initialization_options


def connection_of(session: Any) -> Any:
    """The SDK ``Connection`` behind a request's session (per-connection ``state``, ``exit_stack``), or None.

    ``ServerSession`` keeps it private, but it is the documented home of per-connection state.
    """
    return getattr(session, "_connection", None) if session is not None else None


def add_request_handler(
    mcp: Any, method: str, params_type: type[Any], handler: Callable[[Any, Any], Awaitable[Any]]
) -> None:
    """Serve ``method`` (e.g. ``resources/subscribe``) with ``handler(ctx, params)`` on ``mcp``'s low-level server.

    ``MCPServer`` has no public hook for the handshake era's subscribe/unsubscribe or ``logging/setLevel``;
    the low-level server's ``add_request_handler`` is public, the way to reach it is not.
    """
    mcp._lowlevel_server.add_request_handler(method, params_type, handler)


async def serve_streams(mcp: Any, read_stream: Any, write_stream: Any) -> None:
    """Serve one connection on ``read_stream``/``write_stream``, as ``MCPServer.run_stdio_async`` does on the
    SDK's own stdio streams: for a transport of ours (``nbmcp serve``'s size-capped stdio)."""
    lowlevel = mcp._lowlevel_server
    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
