"""What nbmcp needs from the MCP SDK beyond its public constructor, in one place.

Each helper here works around one thing the SDK does that a Jupyter library must not (configure root
logging) or does not do yet (announce list changes to handshake-era clients, name a request's connection,
register a request handler ``MCPServer`` has no decorator for).
The three servers (in-kernel, ``nbmcp serve``, the Jupyter Server extension) build their ``MCPServer``
through :func:`quiet_mcp_server`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["add_request_handler", "announce_list_changes", "connection_of", "quiet_mcp_server", "serve_streams"]

S = TypeVar("S")


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
