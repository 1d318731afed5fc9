"""The ``nbmcp serve`` MCP server: its tools and resources over a kernel source.

Tools: ``execute``, ``interrupt``, ``restart``, ``list_variables``, ``inspect_variable``, ``read_rows``,
``notebook_read``, ``notebook_edit``, ``notebook_run``; resource ``nbmcp://outputs/{id}`` (full text of
cut outputs). ``read_only`` serves the inspection tools only. Which kernel a call acts on is the kernel
source's business (:mod:`.provider`); the Jupyter Server extension serves these same tools over its
kernels through :func:`build_server`.

The tool functions below declare the schema (names, types, descriptions) and delegate to
:class:`ServeTools` (:mod:`.tool_logic`), which does the work; the shared argument types live in
:mod:`.tool_arguments`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BeforeValidator, Field

from .. import content
from .._version import __version__
from ..sdk import ToolServer, quiet_mcp_server
from ..tasks import TaskRegistry, owner_middleware, tasks_extension
from .logs import serve_set_level
from .provider import KernelProvider, KernelSource, ServeOptions, client_of
from .tool_arguments import ExecuteTimeout, RunInBackground, TaskId, number_as_text
from .tool_logic import ServeTools

__all__ = ["ExecuteTimeout", "RunInBackground", "ServeServer", "ServeTools", "build_server", "number_as_text"]

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

_READING = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
_MUTATING = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


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
            extensions=[] if options.read_only else [tasks_extension(tools.tasks)],
            middleware=[owner_middleware(client_of)],  # a client's background tasks are its own
        )
    )
    serve_set_level(server)
    _add_inspection_tools(server, tools)
    _add_output_resource(server, tools)
    if not options.read_only:
        _add_execution_tools(server, tools)
        _add_task_tools(server, tools)
        _add_notebook_tools(server, tools)
    return ServeServer(server, kernels, tools.store, tools.tasks)


# ------------------------------------------------------------------------------ the tools' schemas


def _add_inspection_tools(server: MCPServer, tools: ServeTools) -> None:
    @server.tool(annotations=_READING, structured_output=False)
    async def list_variables(
        ctx: Context,
        limit: Annotated[int, Field(description="At most this many variables (1-1000).")] = 200,
    ) -> CallToolResult:
        """The kernel's user variables: name, type, shape or length, and a short repr."""
        return await tools.list_variables(ctx, limit)

    @server.tool(annotations=_READING, structured_output=False)
    async def inspect_variable(
        ctx: Context,
        name: Annotated[str, Field(description="Variable name, or a dotted attribute path like df.columns.")],
    ) -> CallToolResult:
        """Describe one variable: frames get schema, shape, memory and head; callables their signature and
        doc; other values a bounded repr."""
        return await tools.inspect_variable(ctx, name)

    @server.tool(annotations=_READING, structured_output=False)
    async def read_rows(
        ctx: Context,
        name: Annotated[
            str,
            Field(
                description="Name of a table (a pandas, polars, pyarrow... DataFrame; an R data.frame, tibble, "
                "data.table, matrix or dbplyr table), a list or a vector."
            ),
        ],
        offset: Annotated[int, Field(description="First row (0-based).")] = 0,
        limit: Annotated[int, Field(description="Number of rows (1-1000).")] = 50,
        columns: Annotated[list[str] | None, Field(description="Only these columns (default: all).")] = None,
    ) -> CallToolResult:
        """One page of rows of a table in the kernel, as a markdown table plus JSON records."""
        return await tools.read_rows(ctx, name, offset, limit, columns)

    @server.tool(annotations=_READING, structured_output=False)
    async def query(
        ctx: Context,
        sql: Annotated[
            str,
            Field(
                description="One SELECT or WITH ... SELECT (DuckDB SQL), tables named by variable, e.g. "
                "SELECT city, count(*) FROM df GROUP BY city."
            ),
        ],
        limit: Annotated[int, Field(description="At most this many rows come back (1-1000).")] = 50,
        save_as: Annotated[
            str | None, Field(description="Also keep the result in a new variable of this name, for read_rows.")
        ] = None,
    ) -> CallToolResult:
        """Read-only SQL over the kernel's DataFrames (pandas, polars incl. lazy, pyarrow, DuckDB relations;
        Spark SQL for Spark frames), run by DuckDB in the kernel: no files, settings or other statements, a
        time limit and a row cap."""
        return await tools.query(ctx, sql, limit, save_as)

    @server.tool(annotations=_READING, structured_output=False)
    async def notebook_read(
        path: Annotated[str, Field(description="Notebook path, relative to the server's root directory.")],
    ) -> CallToolResult:
        """Cells of a notebook file (ids, types, sources, short output summaries) and its version token,
        needed by notebook_edit and notebook_run."""
        return await tools.notebook_read(path)


def _add_output_resource(server: MCPServer, tools: ServeTools) -> None:
    @server.resource(
        "nbmcp://outputs/{output_id}",
        name="output",
        description="The full text of an output that was cut to the output budget.",
        mime_type="text/plain",
    )
    def full_output(output_id: str) -> str:
        return tools.full_output(output_id)


def _add_execution_tools(server: MCPServer, tools: ServeTools) -> None:
    @server.tool(annotations=_MUTATING, structured_output=False)
    async def execute(
        ctx: Context,
        code: Annotated[
            str,
            BeforeValidator(number_as_text),
            Field(
                description="The source text to run, in the kernel's language (Python, R, ...), like a notebook "
                "cell (a string; a bare number is taken as its text)."
            ),
        ],
        timeout: ExecuteTimeout = None,
        background: RunInBackground = False,
    ) -> CallToolResult:
        """Run code in the kernel. Returns stream output, results (tables as markdown + structured rows),
        images and errors, in order. Output streams as progress while it runs; at the timeout the kernel
        is interrupted and the partial output returned (variables are kept). With background=true it
        returns a task id at once instead."""
        return await tools.execute(ctx, code, timeout, background)

    @server.tool(annotations=_MUTATING, structured_output=False)
    async def interrupt(ctx: Context) -> CallToolResult:
        """Interrupt the running cell (KeyboardInterrupt in the kernel); variables are kept."""
        return await tools.interrupt(ctx)

    @server.tool(annotations=_MUTATING, structured_output=False)
    async def restart(
        ctx: Context,
        kernel_name: Annotated[
            str | None,
            Field(description="Start this kernelspec instead (list_kernelspecs names them); default: the same."),
        ] = None,
    ) -> CallToolResult:
        """Restart the kernel: a fresh process, all variables lost. Recovers a dead kernel. With kernel_name, the
        fresh process runs that kernelspec (e.g. R's `ir`)."""
        return await tools.restart(ctx, kernel_name)

    @server.tool(annotations=_READING, structured_output=False)
    async def list_kernelspecs(ctx: Context) -> CallToolResult:
        """The kernelspecs this server can start (name, language, display name), the running one marked."""
        return await tools.list_kernelspecs(ctx)


def _add_task_tools(server: MCPServer, tools: ServeTools) -> None:
    @server.tool(annotations=_READING, structured_output=False)
    async def task_status(task_id: TaskId) -> CallToolResult:
        """A background task's state (working, completed, failed, cancelled), elapsed time and the tail of
        its output so far."""
        return tools.task_status(task_id)

    @server.tool(annotations=_READING, structured_output=False)
    async def task_result(
        task_id: TaskId,
        wait: Annotated[float, Field(description="Seconds to wait for it to finish (0-60).")] = 0,
    ) -> CallToolResult:
        """The result of a finished background task, as execute would have returned it; an error saying it
        still runs otherwise. Finished results stay readable for an hour."""
        return await tools.task_result(task_id, wait)

    @server.tool(annotations=_MUTATING, structured_output=False)
    async def task_cancel(task_id: TaskId) -> CallToolResult:
        """Cancel a background task: its cell is interrupted (variables are kept)."""
        return await tools.task_cancel(task_id)


def _add_notebook_tools(server: MCPServer, tools: ServeTools) -> None:
    @server.tool(annotations=_MUTATING, structured_output=False)
    async def notebook_edit(
        path: Annotated[str, Field(description="Notebook path, relative to the root (created if new).")],
        version: Annotated[str, Field(description="The version token from notebook_read ('' for a new file).")],
        operations: Annotated[
            list[dict[str, Any]],
            Field(
                description=(
                    "Applied in order, all or nothing: {op: 'insert', source, cell_type?, after?|before?}, "
                    "{op: 'replace', cell_id, source, cell_type?}, {op: 'delete', cell_id}."
                )
            ),
        ],
    ) -> CallToolResult:
        """Insert, replace or delete cells by id. Refused if the file changed since notebook_read."""
        return await tools.notebook_edit(path, version, operations)

    @server.tool(annotations=_MUTATING, structured_output=False)
    async def notebook_run(
        ctx: Context,
        path: Annotated[str, Field(description="Notebook path, relative to the root.")],
        cell_ids: Annotated[
            list[str] | None, Field(description="Code cells to run, in this order (default: all, top to bottom).")
        ] = None,
        version: Annotated[
            str | None, Field(description="Refuse to run if the file is no longer at this version.")
        ] = None,
    ) -> CallToolResult:
        """Run notebook cells in this kernel and write their outputs back into the file. Stops at the
        first cell that fails."""
        return await tools.notebook_run(ctx, path, cell_ids, version)
