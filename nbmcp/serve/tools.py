"""The ``nbmcp serve`` MCP server: the kernel tools of :mod:`.kernel_tools.catalog` over a kernel source.

Tools: ``execute``, ``interrupt``, ``restart``, ``list_kernelspecs``, ``list_variables``, ``inspect_variable``,
``read_rows``, ``query``, ``notebook_read``, ``notebook_edit``, ``notebook_run``, ``task_status``, ``task_result``,
``task_cancel``; resource ``nbmcp://outputs/{id}`` (full text of cut outputs). ``read_only`` serves the
inspection tools only. Which kernel a call acts on is the kernel source's business (:mod:`.provider`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer

from .. import content
from .._version import __version__
from ..sdk import ToolServer, quiet_mcp_server
from ..tasks import TaskRegistry, owner_middleware, tasks_extension
from .kernel_tools.catalog import add_kernel_tools
from .kernel_tools.tool_logic import ServeTools
from .provider import KernelProvider, KernelSource, ServeOptions, client_of

__all__ = ["ServeServer", "build_server"]

_INSTRUCTIONS = """\
A live Jupyter kernel (Python, R or another language: the tool results name it). `execute` runs code in it \
like a notebook cell: variables persist between calls, output streams as progress, long cells are interrupted at \
the timeout (state kept). Inspect state with `list_variables`, `inspect_variable` and `read_rows` (Python and R \
kernels; they work while a cell runs); `query` runs one read-only SQL SELECT over a Python kernel's DataFrames \
by variable name. Every execution is recorded in a session notebook. Cut outputs are readable in full at nbmcp://outputs/{id}."""

_READ_ONLY_INSTRUCTIONS = """\
A live Jupyter kernel, read-only: inspect its variables with `list_variables`, `inspect_variable` and \
`read_rows`, run read-only SQL over its DataFrames with `query`, and read notebooks with `notebook_read`. \
Code execution is disabled."""


@dataclass
class ServeServer:
    """The MCP server and what it serves: its kernel source and the store of cut outputs."""

    mcp: MCPServer
    kernels: KernelSource
    store: content.OutputStore
    tasks: TaskRegistry | None = None  # background executes (execute(..., background=True))


def build_server(options: ServeOptions, kernels: KernelSource | None = None) -> ServeServer:
    """The MCP server for ``options`` (tools, resources); kernels come from ``kernels`` (default: a
    :class:`KernelProvider` for ``options``)."""
    kernels = kernels or KernelProvider(options)
    tools = ServeTools(options, kernels)
    server: MCPServer = quiet_mcp_server(
        lambda: ToolServer(
            "nbmcp-serve",
            version=__version__,
            instructions=_READ_ONLY_INSTRUCTIONS if options.read_only else _INSTRUCTIONS,
            # 2026 era: a client with the tasks extension gets `execute` as a task it polls (nbmcp.tasks)
            extensions=[] if options.read_only else [tasks_extension(tools.tasks, grace=options.task_grace)],
            middleware=[owner_middleware(client_of)],  # a client's background tasks are its own
        )
    )
    add_kernel_tools(server, tools)
    return ServeServer(server, kernels, tools.store, tools.tasks)
