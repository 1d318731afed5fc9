"""``nbmcp serve``: an MCP server that runs code in a Jupyter kernel (started, attached or remote).

The public names of this wing, for the CLI and the Jupyter Server extension. They load on first use:
``nbmcp serve`` launches its kernel before the MCP SDK is imported (start-up time), and importing this
package must not import the SDK.

Rooms: :mod:`.kernel` (one kernel over the Jupyter messaging protocol, and how much of an output is kept);
:mod:`.kernel_tools` (the kernel tools: declared once in :mod:`.kernel_tools.catalog`, their logic, arguments and
answers); :mod:`.notebook` (notebook files: the session recording and the notebook tools); :mod:`.languages` (one
inspection adapter per kernel language, with the code each runs in the kernel). At the top: :mod:`.provider`,
:mod:`.run`, :mod:`.tools`, :mod:`.unavailable`.

Adding a kernel tool = one ``@_declare``-d function in :mod:`.kernel_tools.catalog` (its logic a method of
``ServeTools`` in :mod:`.kernel_tools.tool_logic`): ``nbmcp serve`` and the Jupyter extension's ``{base_url}nbmcp/mcp``
both get it, the latter with its ``notebook`` argument, and ``tests/jupyter/test_tool_parity.py`` checks they agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kernel.execution import ExecutionOutcome
    from .kernel.session import KernelSession
    from .kernel_tools.catalog import KernelSelector, add_kernel_tools
    from .kernel_tools.tool_logic import ServeTools
    from .notebook.notebooks import NotebookFiles, apply_operations, notebook_state
    from .provider import (
        ExecutionRun,
        KernelHandle,
        KernelSource,
        ServeOptions,
        attach_kernel,
        cancel_on_disconnect,
        client_of,
    )
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
    "ExecutionOutcome": "kernel.execution",
    "ExecutionRun": "provider",
    "KernelHandle": "provider",
    "KernelSelector": "kernel_tools.catalog",
    "KernelSession": "kernel.session",
    "KernelSource": "provider",
    "NotebookFiles": "notebook.notebooks",
    "apply_operations": "notebook.notebooks",
    "notebook_state": "notebook.notebooks",
    "ServeOptions": "provider",
    "ServeServer": "tools",
    "ServeTools": "kernel_tools.tool_logic",
    "add_kernel_tools": "kernel_tools.catalog",
    "attach_kernel": "provider",
    "build_server": "tools",
    "cancel_on_disconnect": "provider",
    "client_of": "provider",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
