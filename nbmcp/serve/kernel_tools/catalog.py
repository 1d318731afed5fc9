"""Serve's kernel tools, each declared once: name, arguments, description, annotations.

Every MCP endpoint that acts on kernels through :class:`~nbmcp.serve.kernel_tools.tool_logic.ServeTools` gets its tools
from here through :func:`add_kernel_tools`: ``nbmcp serve`` (:mod:`..tools`) and the Jupyter Server extension's
``{base_url}nbmcp/mcp``. A declaration says what a client sees and hands the call to ``ServeTools``, which does
the work. A kernel source that serves several kernels at once contributes a :class:`KernelSelector` (the Jupyter
extension's ``notebook``): each tool that acts on a caller-chosen kernel then takes that argument too, and the
selector runs the call on the kernel it names.

A new kernel tool is one ``@_declare``-d function below (and its logic in ``ServeTools``); both endpoints offer
it, and ``tests/jupyter/test_tool_parity.py`` checks they agree.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BeforeValidator, Field

from .logs import serve_set_level
from .tool_arguments import ExecuteTimeout, RunInBackground, TaskId, number_as_text
from .tool_logic import ServeTools

__all__ = ["KERNEL_TOOLS", "KernelSelector", "KernelTool", "add_kernel_tools"]

_READING = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
_MUTATING = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

ToolCall = Callable[[], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class KernelSelector:
    """An argument a kernel source adds to each tool that acts on a caller-chosen kernel, and how a call runs with
    it: ``run(value, call)`` makes the kernel ``value`` names the one ``call`` gets, and returns its result."""

    name: str
    description: str
    run: Callable[[str | None, ToolCall], Awaitable[CallToolResult]]


@dataclass(frozen=True)
class KernelTool:
    """One declared tool: ``function(tools, **arguments)`` (its docstring is the description)."""

    function: Callable[..., Awaitable[CallToolResult]]
    annotations: ToolAnnotations
    read_only: bool  # offered by a read-only server too
    selects_kernel: bool  # acts on a caller-chosen kernel: takes a kernel source's selector argument

    @property
    def name(self) -> str:
        return self.function.__name__


KERNEL_TOOLS: list[KernelTool] = []


def _declare(
    annotations: ToolAnnotations, *, read_only: bool = False, selects_kernel: bool = True
) -> Callable[[Callable[..., Awaitable[CallToolResult]]], Callable[..., Awaitable[CallToolResult]]]:
    def declare(function: Callable[..., Awaitable[CallToolResult]]) -> Callable[..., Awaitable[CallToolResult]]:
        KERNEL_TOOLS.append(KernelTool(function, annotations, read_only, selects_kernel))
        return function

    return declare


def add_kernel_tools(server: MCPServer, tools: ServeTools, selector: KernelSelector | None = None) -> None:
    """Put the kernel tools (the read-only ones when ``tools.options.read_only``), the resource of cut outputs and
    ``logging/setLevel`` (kernel stderr as log messages) on ``server``; with ``selector``, each tool that acts on a
    caller-chosen kernel takes its argument."""
    unknown = set(tools.description_notes) - {declared.name for declared in KERNEL_TOOLS}
    if unknown:
        raise ValueError(f"description_notes for tools the catalog does not declare: {sorted(unknown)}")
    serve_set_level(server)
    for declared in KERNEL_TOOLS:
        if declared.read_only or not tools.options.read_only:
            server.add_tool(
                _tool_function(declared, tools, selector if declared.selects_kernel else None),
                name=declared.name,
                description=_description(declared, tools),
                annotations=declared.annotations,
                structured_output=False,
            )

    @server.resource(
        "nbmcp://outputs/{output_id}",
        name="output",
        description="The full text of an output that was cut to the output budget.",
        mime_type="text/plain",
    )
    def full_output(output_id: str) -> str:
        return tools.full_output(output_id)


def _description(declared: KernelTool, tools: ServeTools) -> str:
    description = inspect.getdoc(declared.function) or ""
    note = tools.description_notes.get(declared.name)
    return f"{description} {note}" if note else description


def _tool_function(
    declared: KernelTool, tools: ServeTools, selector: KernelSelector | None
) -> Callable[..., Awaitable[CallToolResult]]:
    """The declaration as the SDK reads a tool: its parameters without ``tools``, plus the selector's, if any."""
    parameters = list(inspect.signature(declared.function, eval_str=True).parameters.values())[1:]
    if selector is not None:
        if any(p.name == selector.name for p in parameters):
            raise ValueError(f"the tool {declared.name} already has an argument {selector.name!r}")
        chosen = inspect.Parameter(
            selector.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[str | None, Field(description=selector.description)],
        )
        # after the required arguments, where a reader looks for what the call acts on
        at = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
        parameters.insert(at, chosen)

    async def tool(**arguments: Any) -> CallToolResult:
        if selector is None:
            return await declared.function(tools, **arguments)
        value = arguments.pop(selector.name, None)
        return await selector.run(value, lambda: declared.function(tools, **arguments))

    tool.__name__ = tool.__qualname__ = declared.name
    # PEP 362: the signature the SDK builds the tool's argument model from (and finds `ctx` in)
    tool.__signature__ = inspect.Signature(parameters, return_annotation=CallToolResult)
    tool.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": CallToolResult}
    return tool


# ------------------------------------------------------------------------------ inspection (read-only too)


@_declare(_READING, read_only=True)
async def list_variables(
    tools: ServeTools,
    ctx: Context,
    limit: Annotated[int, Field(description="At most this many variables (1-1000).")] = 200,
) -> CallToolResult:
    """The kernel's user variables: name, type, shape or length, and a short repr."""
    return await tools.list_variables(ctx, limit)


@_declare(_READING, read_only=True)
async def inspect_variable(
    tools: ServeTools,
    ctx: Context,
    name: Annotated[str, Field(description="Variable name, or a dotted attribute path like df.columns.")],
) -> CallToolResult:
    """Describe one variable: frames get schema, shape, memory and head; callables their signature and
    doc; other values a bounded repr."""
    return await tools.inspect_variable(ctx, name)


@_declare(_READING, read_only=True)
async def read_rows(
    tools: ServeTools,
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


@_declare(_READING, read_only=True)
async def query(
    tools: ServeTools,
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


@_declare(_READING, read_only=True, selects_kernel=False)
async def notebook_read(
    tools: ServeTools,
    path: Annotated[str, Field(description="Notebook path, relative to the server's root directory.")],
) -> CallToolResult:
    """Cells of a notebook file (ids, types, sources, short output summaries) and its version token,
    needed by notebook_edit and notebook_run."""
    return await tools.notebook_read(path)


# ------------------------------------------------------------------------------ execution


@_declare(_MUTATING)
async def execute(
    tools: ServeTools,
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


@_declare(_MUTATING)
async def interrupt(tools: ServeTools, ctx: Context) -> CallToolResult:
    """Interrupt the running cell (KeyboardInterrupt in the kernel); variables are kept."""
    return await tools.interrupt(ctx)


@_declare(_MUTATING)
async def restart(
    tools: ServeTools,
    ctx: Context,
    kernel_name: Annotated[
        str | None,
        Field(description="Start this kernelspec instead (list_kernelspecs names them); default: the same."),
    ] = None,
) -> CallToolResult:
    """Restart the kernel: a fresh process, all variables lost. Recovers a dead kernel. With kernel_name, the
    fresh process runs that kernelspec (e.g. R's `ir`)."""
    return await tools.restart(ctx, kernel_name)


@_declare(_READING)
async def list_kernelspecs(tools: ServeTools, ctx: Context) -> CallToolResult:
    """The kernelspecs this server can start (name, language, display name), the running one marked."""
    return await tools.list_kernelspecs(ctx)


# ------------------------------------------------------------------------------ background tasks (by task id)


@_declare(_READING, selects_kernel=False)
async def task_status(tools: ServeTools, task_id: TaskId) -> CallToolResult:
    """A background task's state (working, completed, failed, cancelled), elapsed time and the tail of
    its output so far."""
    return tools.task_status(task_id)


@_declare(_READING, selects_kernel=False)
async def task_result(
    tools: ServeTools,
    task_id: TaskId,
    wait: Annotated[float, Field(description="Seconds to wait for it to finish (0-60).")] = 0,
) -> CallToolResult:
    """The result of a finished background task, as execute would have returned it; an error saying it
    still runs otherwise. Finished results stay readable for an hour."""
    return await tools.task_result(task_id, wait)


@_declare(_MUTATING, selects_kernel=False)
async def task_cancel(tools: ServeTools, task_id: TaskId) -> CallToolResult:
    """Cancel a background task: its cell is interrupted (variables are kept)."""
    return await tools.task_cancel(task_id)


# ------------------------------------------------------------------------------ notebook files (by path)


@_declare(_MUTATING, selects_kernel=False)
async def notebook_edit(
    tools: ServeTools,
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


# The notebook at `path` says which kernel runs it where a server has several (the Jupyter extension: its own).
@_declare(_MUTATING, selects_kernel=False)
async def notebook_run(
    tools: ServeTools,
    ctx: Context,
    path: Annotated[str, Field(description="Notebook path, relative to the root.")],
    cell_ids: Annotated[
        list[str] | None, Field(description="Code cells to run, in this order (default: all, top to bottom).")
    ] = None,
    version: Annotated[str | None, Field(description="Refuse to run if the file is no longer at this version.")] = None,
) -> CallToolResult:
    """Run notebook cells in this kernel and write their outputs back into the file. Stops at the
    first cell that fails."""
    return await tools.notebook_run(ctx, path, cell_ids, version)
