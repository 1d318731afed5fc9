"""``nbmcp serve``: an MCP server that runs code in a Jupyter kernel (started, attached or remote).

- :mod:`nbmcp.serve.session` -- :class:`KernelSession`, one kernel over the Jupyter protocol;
- :mod:`nbmcp.serve.outputs` -- kernel outputs -> MCP results (through :mod:`nbmcp.values`);
- :mod:`nbmcp.serve.tools` -- the MCP server: tools, resources, per-client kernels, transports;
- :mod:`nbmcp.serve.recorder`, :mod:`nbmcp.serve.notebooks` -- session notebook, notebook files.

Nothing is imported here eagerly; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExecutionOutcome", "KernelSession", "build_server"]


def __getattr__(name: str) -> Any:
    if name in ("ExecutionOutcome", "KernelSession"):
        from . import session

        return getattr(session, name)
    if name == "build_server":
        from .tools import build_server

        return build_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
