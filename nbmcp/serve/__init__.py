"""``nbmcp serve``: an MCP server that runs code in a Jupyter kernel (started, attached or remote).

The public names of this wing, for the CLI and the Jupyter Server extension. They load on first use:
``nbmcp serve`` launches its kernel before the MCP SDK is imported (start-up time), and importing this
package must not import the SDK.

Rooms: the kernel -- :mod:`.channels`, :mod:`.connect`, :mod:`.execution`, :mod:`.session` (which owns the
kernel: start, attach, restart, shutdown, liveness) over :mod:`.kernel_requests` (execute, inspect, interrupt)
over :mod:`.message_router` (each message to its request); the server -- :mod:`.provider`, :mod:`.inspection`
(with :mod:`.probe`, which runs in the kernel), :mod:`.catalog` (the kernel tools, each declared once),
:mod:`.tool_logic` (what they do), :mod:`.tool_arguments` (their shared argument types), :mod:`.tools`
(:func:`build_server`), :mod:`.run`; results and files -- :mod:`.outputs`, :mod:`.recorder`, :mod:`.notebooks`.

Adding a kernel tool = one ``@_declare``-d function in :mod:`.catalog` (its logic a method of ``ServeTools`` in
:mod:`.tool_logic`): ``nbmcp serve`` and the Jupyter extension's ``{base_url}nbmcp/mcp`` both get it, the latter
with its ``notebook`` argument, and ``tests/jupyter/test_tool_parity.py`` checks they agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import KernelSelector, add_kernel_tools
    from .execution import ExecutionOutcome
    from .notebooks import NotebookFiles, apply_operations, notebook_state
    from .provider import (
        ExecutionRun,
        KernelHandle,
        KernelSource,
        ServeOptions,
        attach_kernel,
        cancel_on_disconnect,
        client_of,
    )
    from .session import KernelSession
    from .tool_logic import ServeTools
    from .tools import ServeServer, build_server

__all__ = [
    "ExecutionOutcome",
    "ExecutionRun",
    "KernelHandle",
    "KernelSelector",
    "KernelSession",
    "KernelSource",
    "NotebookFiles",
    "ServeOptions",
    "ServeServer",
    "ServeTools",
    "add_kernel_tools",
    "apply_operations",
    "attach_kernel",
    "build_server",
    "cancel_on_disconnect",
    "client_of",
    "notebook_state",
]

_HOME = {
    "ExecutionOutcome": "execution",
    "ExecutionRun": "provider",
    "KernelHandle": "provider",
    "KernelSelector": "catalog",
    "KernelSession": "session",
    "KernelSource": "provider",
    "NotebookFiles": "notebooks",
    "apply_operations": "notebooks",
    "notebook_state": "notebooks",
    "ServeOptions": "provider",
    "ServeServer": "tools",
    "ServeTools": "tool_logic",
    "add_kernel_tools": "catalog",
    "attach_kernel": "provider",
    "build_server": "tools",
    "cancel_on_disconnect": "provider",
    "client_of": "provider",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
