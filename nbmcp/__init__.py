"""nbmcp: your live Jupyter kernel, served to AI assistants over the Model Context Protocol.

``import nbmcp`` stays light: the MCP SDK, uvicorn, pandas and IPython load only when a server starts
or a value needs them.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .exceptions import (
    ApprovalDenied,
    ClientConnectError,
    KernelDeadError,
    KernelSessionError,
    NbMCPError,
    StaleNotebookError,
    ToolTimeout,
    UpstreamError,
)
from .inkernel.api import (
    embed_resource,
    expose,
    info,
    load_ipython_extension,
    panel,
    prompt,
    resource,
    start,
    stop,
    tool,
    unexpose,
    unload_ipython_extension,
)

__all__ = [
    "ApprovalDenied",
    "ClientConnectError",
    "Context",
    "KernelDeadError",
    "KernelSessionError",
    "NbMCPError",
    "StaleNotebookError",
    "ToolContext",
    "ToolTimeout",
    "UpstreamError",
    "__version__",
    "embed_resource",
    "expose",
    "info",
    "load_ipython_extension",
    "panel",
    "prompt",
    "resource",
    "start",
    "stop",
    "tool",
    "unexpose",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    # `import nbmcp` then `nbmcp.client.session(...)`: the client module (light itself) loads when first named.
    if name == "client":
        import importlib

        return importlib.import_module(".client", __name__)
    # The SDK's Context, re-exported without importing the SDK until a notebook asks for it.
    if name == "Context":
        from mcp.server.mcpserver import Context

        return Context
    if name == "ToolContext":  # what a tool gets to ask the client: elicit, sample (nbmcp.inkernel.calls.interaction)
        from .inkernel.calls.interaction import ToolContext

        return ToolContext
    raise AttributeError(f"module 'nbmcp' has no attribute {name!r}")
