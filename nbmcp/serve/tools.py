"""The ``nbmcp serve`` MCP server: its tools and resources over a kernel source.

Tools: ``execute``, ``interrupt``, ``restart``, ``list_variables``, ``inspect_variable``, ``read_rows``,
``notebook_read``, ``notebook_edit``, ``notebook_run``; resource ``nbmcp://outputs/{id}`` (full text of
cut outputs). ``read_only`` serves the inspection tools only. Which kernel a call acts on is the kernel
source's business (:mod:`.provider`); the Jupyter Server extension serves these same tools over its
kernels through :func:`build_server`.

The tool functions below declare the schema (names, types, descriptions) and delegate to
:class:`ServeTools`, which does the work.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BeforeValidator, Field

from .. import content
from .._version import __version__
from ..exceptions import KernelDeadError, KernelSessionError, StaleNotebookError
from ..sdk import quiet_mcp_server
from ..tasks import TaskRegistry, status_result, tasks_extension
from .execution import ExecutionOutcome, OutputCallback
from .inspection import describe_text, rows_text, run_probe, variables_text
from .logs import forward_stderr, serve_set_level
from .outputs import ProgressPump, error_result, kernel_label, outcome_result, output_kinds, text_result
from .provider import ClientDisconnected, KernelHandle, KernelProvider, KernelSource, ServeOptions, cancel_on_disconnect
from .query import run_query

__all__ = ["ExecuteTimeout", "RunInBackground", "ServeServer", "ServeTools", "build_server", "number_as_text"]

# The execute arguments nbmcp serve and the Jupyter Server extension share.
ExecuteTimeout = Annotated[
    float | None,
    Field(description="Seconds before the kernel is interrupted (default: server's; none in the background)."),
]
RunInBackground = Annotated[
    bool,
    Field(
        description="Run as a background task and return its id at once (for long cells): then "
        "task_status, task_result, task_cancel."
    ),
]

_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

_INSTRUCTIONS = """\
A live Jupyter kernel. `execute` runs code in it like a notebook cell: variables persist between calls, \
output streams as progress, long cells are interrupted at the timeout (state kept). Inspect state with \
`list_variables`, `inspect_variable` and `read_rows` (they work while a cell runs); `query` runs one read-only \
SQL SELECT over the kernel's DataFrames by variable name. Every execution is \
recorded in a session notebook. Cut outputs are readable in full at nbmcp://outputs/{id}."""

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
        lambda: MCPServer(
            "nbmcp-serve",
            version=__version__,
            instructions=_READ_ONLY_INSTRUCTIONS if options.read_only else _INSTRUCTIONS,
            # 2026 era: a client with the tasks extension gets `execute` as a task it polls (nbmcp.tasks)
            extensions=[] if options.read_only else [tasks_extension(tools.tasks)],
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


class ServeTools:
    """What the tools do, given the server's options and kernel source."""

    def __init__(self, options: ServeOptions, kernels: KernelSource) -> None:
        self.options = options
        self.kernels = kernels
        self.store = content.OutputStore()
        self.tasks = TaskRegistry()
        self._files: Any = None

    @property
    def files(self) -> Any:
        """Notebook files under the root (nbformat is imported on first use)."""
        if self._files is None:
            from .notebooks import NotebookFiles

            self._files = NotebookFiles(self.options.root)
        return self._files

    def budgeted(self, result: CallToolResult) -> CallToolResult:
        """``result`` cut to the output budget (the full text stays readable at ``nbmcp://outputs/{id}``)."""
        converted = content.Converted(list(result.content), None, result.is_error)
        cut = content.apply_budget(converted, self.options.output_budget, self.store)
        if cut is converted:
            return result
        structured = dict(result.structured_content or {})
        structured["truncated"] = True
        return CallToolResult(content=cut.content, structured_content=structured, is_error=result.is_error)

    # -- inspection

    async def list_variables(self, ctx: Context, limit: int) -> CallToolResult:
        if not 1 <= limit <= 1000:
            raise ToolError(f"limit must be between 1 and 1000, got {limit}")
        handle = await self.kernels.get(ctx)
        data = await run_probe(handle.session, f"list_variables({limit})")
        kernel = handle.session.describe()
        text = variables_text(data, kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(text, data))

    async def inspect_variable(self, ctx: Context, name: str) -> CallToolResult:
        name = _check_name(name)
        handle = await self.kernels.get(ctx)
        data = await run_probe(handle.session, f"inspect_variable({name!r}, 4000)")
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"inspect_variable: {data['error']}", kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(describe_text(data), data))

    async def read_rows(
        self, ctx: Context, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> CallToolResult:
        name = _check_name(name)
        if offset < 0:
            raise ToolError(f"offset must be >= 0, got {offset}")
        if not 1 <= limit <= 1000:
            raise ToolError(f"limit must be between 1 and 1000, got {limit}")
        handle = await self.kernels.get(ctx)
        call = f"read_rows({name!r}, {int(offset)}, {int(limit)}, {list(columns) if columns else None!r})"
        data = await run_probe(handle.session, call)
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"read_rows: {data['error']}", kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(rows_text(data, name), data))

    async def query(self, ctx: Context, sql: str, limit: int, save_as: str | None) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        opts = self.options
        result = await run_query(
            handle.session, sql, limit, save_as, timeout=opts.query_timeout, read_only=opts.read_only
        )
        return self.budgeted(result)

    def full_output(self, output_id: str) -> str:
        try:
            return self.store.get(output_id)
        except KeyError as exc:
            raise ResourceError(str(exc.args[0])) from exc

    # -- execution

    async def run_code(
        self,
        handle: KernelHandle,
        code: str,
        timeout: float | None,
        ctx: Context | None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionOutcome:
        """Run ``code``, streaming its output as progress (and to ``on_output``: a background task's tail), and
        record it (a cancelled run too)."""
        session = handle.session
        run = await handle.begin(code)
        pump = ProgressPump(ctx.report_progress) if ctx is not None else None
        try:
            async with cancel_on_disconnect(ctx):  # a vanished HTTP client's cell is interrupted
                outcome = await session.execute(
                    code,
                    timeout=timeout,
                    on_output=_fan_out(pump.on_output if pump is not None else None, run.on_output, on_output),
                    on_outputs=run.on_outputs,
                )
        except BaseException as exc:
            partial = session.last_outcome
            cancelled = isinstance(exc, (asyncio.CancelledError, anyio.get_cancelled_exc_class(), ClientDisconnected))
            with anyio.CancelScope(shield=True):  # the record of a cancelled run is kept all the same
                if cancelled and partial is not None and partial.status == "cancelled":
                    await run.finish(partial)
                else:
                    await run.fail(exc)
            raise
        finally:
            if pump is not None:
                await pump.close()
        await run.finish(outcome)
        return outcome

    async def execute(self, ctx: Context, code: str, timeout: float | None, background: bool = False) -> CallToolResult:
        if timeout is not None and not timeout > 0:
            raise ToolError(f"timeout must be a positive number of seconds, got {timeout}")
        handle = await self.kernels.get(ctx)
        if background:
            return self._start_background(handle, code, timeout)
        return await self._execute_now(handle, code, timeout or self.options.timeout, ctx)

    async def _execute_now(
        self, handle: KernelHandle, code: str, timeout: float | None, ctx: Context | None, on_output: Any = None
    ) -> CallToolResult:
        session = handle.session
        try:
            outcome = await self.run_code(handle, code, timeout, ctx, on_output)
        except KernelDeadError as exc:
            return error_result(str(exc), session.describe())
        except KernelSessionError as exc:
            return error_result(f"execute: {exc}", session.describe())
        logged = await forward_stderr(ctx, outcome.outputs)
        return outcome_result(
            outcome,
            kernel=session.describe(),
            budget=self.options.output_budget,
            store=self.store,
            image_max_px=self.options.image_max_px,
            omit_streams=("stderr",) if logged else (),
        )

    # -- background execution (nbmcp.tasks)

    def _start_background(self, handle: KernelHandle, code: str, timeout: float | None) -> CallToolResult:
        """Start ``code`` as a background task (no timeout unless one is given); answer with its id at once."""
        first_line = code.strip().splitlines()[0][:60] if code.strip() else "(empty)"
        try:
            task = self.tasks.start(
                "execute",
                f"execute {first_line!r}",
                lambda task: self._execute_now(handle, code, timeout, None, on_output=task.on_output),
            )
        except RuntimeError as exc:
            raise ToolError(str(exc)) from exc
        text = (
            f"started task {task.id}: the cell runs in the background. Poll task_status({task.id!r}) for progress "
            f"and output so far, fetch task_result({task.id!r}) when it is done, task_cancel({task.id!r}) "
            "interrupts it."
        )
        return text_result(text, {"task_id": task.id, "status": task.status, "kernel": handle.session.describe()})

    def _task(self, task_id: str) -> Any:
        try:
            return self.tasks.get(task_id)
        except LookupError as exc:
            raise ToolError(str(exc)) from exc

    def task_status(self, task_id: str) -> CallToolResult:
        return status_result(self._task(task_id))

    async def task_result(self, task_id: str, wait: float) -> CallToolResult:
        if not 0 <= wait <= 60:
            raise ToolError(f"wait must be between 0 and 60 seconds, got {wait}")
        self._task(task_id)
        task = await self.tasks.wait(task_id, wait)
        return task.result if task.result is not None else status_result(task, not_finished_error=True)

    async def task_cancel(self, task_id: str) -> CallToolResult:
        self._task(task_id)
        task = await self.tasks.cancel(task_id)
        return status_result(task)

    async def interrupt(self, ctx: Context) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        kernel = handle.session.describe()
        try:
            await handle.session.interrupt()
        except Exception as exc:
            return error_result(f"could not interrupt {kernel_label(kernel)}: {exc}", kernel)
        return text_result(f"interrupted {kernel_label(kernel)}", {"status": "ok", "kernel": kernel})

    async def restart(self, ctx: Context) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        started = time.monotonic()
        try:
            await handle.session.restart()
        except Exception as exc:
            return error_result(f"restart failed: {exc}", handle.session.describe())
        kernel = handle.session.describe()
        took = time.monotonic() - started
        return text_result(
            f"restarted {kernel_label(kernel)} in {took:.1f} s; all variables are gone",
            {"status": "ok", "kernel": kernel, "duration_ms": round(took * 1000, 1)},
        )

    # -- notebook files

    async def notebook_read(self, path: str) -> CallToolResult:
        try:
            data = await anyio.to_thread.run_sync(self.files.read, path)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(f"path: {exc}") from exc
        return self.budgeted(text_result(json.dumps(data, indent=1, default=str), data))

    async def notebook_edit(self, path: str, version: str, operations: list[dict[str, Any]]) -> CallToolResult:
        try:
            data = await anyio.to_thread.run_sync(self.files.edit, path, version, operations)
        except StaleNotebookError as exc:
            return error_result(str(exc))
        except KeyError as exc:
            raise ToolError(f"operations: {exc.args[0]}") from exc
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(str(exc)) from exc
        return self.budgeted(text_result(json.dumps(data, indent=1, default=str), data))

    async def notebook_run(
        self, ctx: Context, path: str, cell_ids: list[str] | None, version: str | None
    ) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        session = handle.session

        def execute_cell(code: str) -> ExecutionOutcome:  # on the worker thread of run_cells
            return anyio.from_thread.run(self.run_code, handle, code, self.options.timeout, ctx)

        try:
            data = await anyio.to_thread.run_sync(
                lambda: self.files.run_cells(path, cell_ids, execute_cell, version=version)
            )
        except (StaleNotebookError, KernelDeadError) as exc:
            return error_result(str(exc), session.describe())
        except KeyError as exc:
            raise ToolError(f"cell_ids: {exc.args[0]}") from exc
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(str(exc)) from exc
        return self._cells_result(data, session.describe())

    def _cells_result(self, data: dict[str, Any], kernel: dict[str, Any]) -> CallToolResult:
        """``notebook_run``'s result: per cell a status line and its outputs; fails if a cell failed."""
        converted = content.Converted([])
        failed = False
        for res in data["results"]:
            line = f"cell {res['cell_id']}: {res['status']} (In [{res['execution_count']}])"
            converted.content.append(text_result(line).content[0])
            converted.extend(content.convert_outputs(res["outputs"], image_max_px=self.options.image_max_px))
            failed = failed or res["status"] != "ok"
            res["outputs"] = output_kinds(res["outputs"])
        converted = content.apply_budget(converted, self.options.output_budget, self.store)
        structured = {
            "path": data["path"],
            "version": data["version"],
            "results": data["results"],
            "not_written": data["not_written"],
            "truncated": converted.truncated,
            "kernel": kernel,
        }
        return CallToolResult(content=converted.content, structured_content=structured, is_error=failed)


def _fan_out(*callbacks: OutputCallback | None) -> OutputCallback | None:
    """One ``on_output`` calling each of ``callbacks`` (progress notifications, a live cell) in turn."""
    live = [c for c in callbacks if c is not None]
    if len(live) < 2:
        return live[0] if live else None

    async def each(name: str, text: str) -> None:
        for callback in live:
            pending = callback(name, text)
            if pending is not None:
                await pending

    return each


def number_as_text(value: Any) -> Any:
    """A number sent for ``code`` as its text: CLI clients such as the MCP Inspector (``--tool-arg code=1``)
    send ``1`` as a JSON number, and refusing it ("Input should be a valid string") helps nobody."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not _DOTTED_NAME.match(name):
        raise ToolError(f"name must be a variable name or dotted attribute path (like df.columns), got {name!r}")
    return name


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
        name: Annotated[str, Field(description="Name of a DataFrame (pandas, polars, pyarrow) or list.")],
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
                description="Python source text to run, like a notebook cell (a string; a bare number is "
                "taken as its text)."
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
    async def restart(ctx: Context) -> CallToolResult:
        """Restart the kernel: a fresh process, all variables lost. Recovers a dead kernel."""
        return await tools.restart(ctx)


TaskId = Annotated[str, Field(description="The id execute(..., background=true) returned.")]


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
