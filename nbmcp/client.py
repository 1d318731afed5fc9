"""Connect the official MCP SDK client to an nbmcp server (in-kernel or ``nbmcp serve --transport http``)."""

from __future__ import annotations

from typing import Any

__all__ = ["connect"]


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    kernel_id: str | None = None,
    mode: str = "auto",
    **client_options: Any,
) -> Any:
    """An ``mcp.Client`` (use it with ``async with``) that sends the bearer token.

    With no ``url``, the server is found through its connection file (``kernel_id`` or the newest).
    """
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    if url is None:
        from .discovery import find_server

        found = find_server(kernel_id)
        url, token = found["url"], token or found["token"]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, mode=mode, **client_options)
