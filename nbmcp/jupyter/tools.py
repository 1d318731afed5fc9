"""The MCP tools at ``{base_url}nbmcp/mcp``: the Jupyter Server's notebooks, and ``nbmcp serve``'s tools per notebook.

The code tools are ``nbmcp serve``'s own (:func:`nbmcp.serve.build_server`): one instance of that server
is built with :class:`JupyterKernels` as its kernel source, and each tool here adds a ``notebook``
argument, selects that notebook's kernel for the call and delegates to the ``serve`` tool of the same
name. The kernels themselves are :mod:`.kernels`'s business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BeforeValidator, Field

from .. import content
from .._version import __version__
from ..sdk import ToolServer, quiet_mcp_server
from ..serve import (
    ExecuteTimeout,
    NotebookFiles,
    RunInBackground,
    ServeOptions,
    ServeServer,
    cancel_on_disconnect,
    client_of,
    number_as_text,
)
from ..serve import build_server as build_serve_server
from ..tasks import owner_middleware, tasks_extension
from .kernels import JupyterKernels, selected_kernel
from .live import LiveKernelHandle, edit_document, read_document, run_document_cells

__all__ = ["JupyterMCP", "build_server"]

Notebook = Annotated[
    str | None,
    Field(description="Notebook path (as in list_notebooks) or kernel id; optional when one kernel runs."),
]

_INSTRUCTIONS = """\
The kernels of a Jupyter Server: the notebooks a person has open. `list_notebooks` says which notebook \
runs on which kernel; the other tools take `notebook` (a notebook path or a kernel id) and act on that \
notebook's live kernel: `execute` runs code there like a cell (variables are shared with the notebook), \
`list_variables`, `inspect_variable` and `read_rows` inspect it. `notebook_read`, `notebook_edit` and \
`notebook_run` work on notebook files by path (an open notebook's live document, which the human sees). \
Notebooks that ran `%load_ext nbmcp` also serve their own tools at their `mcp_url`."""


@dataclass
class JupyterMCP:
    """The MCP server of ``{base_url}nbmcp/mcp`` and what it is built on."""

    mcp: MCPServer
    kernels: JupyterKernels
    serve: ServeServer  # nbmcp serve's tools over the same kernels, which the tools here delegate to


TaskId = Annotated[str, Field(description="The id execute(..., background=true) returned.")]


def build_server(
    kernels: JupyterKernels,
    *,
    root_dir: str | Path,
    read_only: bool = False,
    timeout: float = 60.0,
    output_budget: int | None = None,
    image_max_px: int | None = None,
) -> JupyterMCP:
    """The MCP server of ``{base_url}nbmcp/mcp``: notebooks and kernels, and ``serve``'s tools per notebook."""
    options = ServeOptions(
        root=Path(root_dir),
        record=False,
        timeout=timeout,
        output_budget=output_budget or content.DEFAULT_OUTPUT_BUDGET,
        image_max_px=image_max_px or content.DEFAULT_IMAGE_MAX_PX,
        read_only=read_only,
        transport="http",
        shared=True,
    )
    serving = build_serve_server(options, kernels)
    serve = serving.mcp
    extensions = [] if read_only or serving.tasks is None else [tasks_extension(serving.tasks)]
    server: MCPServer = quiet_mcp_server(
        lambda: ToolServer(
            "nbmcp-jupyter",
            version=__version__,
            instructions=_INSTRUCTIONS,
            extensions=extensions,
            middleware=[owner_middleware(client_of)],  # a client's background tasks are its own
        )
    )
    built = JupyterMCP(server, kernels, serving)
    reading = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    mutating = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    async def delegate(ctx: Context, notebook: str | None, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        kernel_id, paths = await kernels.resolve(notebook)
        token = selected_kernel.set(kernel_id)
        try:
            result = await serve.call_tool(tool, arguments, ctx)
        except ToolError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        finally:
            selected_kernel.reset(token)
        if isinstance(result, CallToolResult) and isinstance(result.structured_content, dict):
            result.structured_content["notebooks"] = paths
        return result

    @server.tool(annotations=reading, structured_output=False)
    async def list_notebooks() -> CallToolResult:
        """Which notebook is open on which kernel: kernel id, kernel name, busy/idle, the notebook paths,
        and whether the notebook ran `%load_ext nbmcp` (then its own tools are at `mcp_path`)."""
        entries = await kernels.notebooks()
        lines = [f"{len(entries)} kernel(s) on this Jupyter Server"]
        for e in entries:
            where = ", ".join(e["notebooks"]) or "(no notebook)"
            extra = f"; nbmcp tools at {e['mcp_path']}" if e["nbmcp_loaded"] else ""
            lines.append(f"- {where}: kernel {e['kernel_id']} ({e['kernel_name']}, {e['execution_state']}){extra}")
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))], structured_content={"kernels": entries}
        )

    @server.tool(annotations=reading, structured_output=False)
    async def list_variables(
        ctx: Context,
        notebook: Notebook = None,
        limit: Annotated[int, Field(description="At most this many variables (1-1000).")] = 200,
    ) -> CallToolResult:
        """The user variables of a notebook's kernel: name, type, shape or length, and a short repr."""
        return await delegate(ctx, notebook, "list_variables", {"limit": limit})

    @server.tool(annotations=reading, structured_output=False)
    async def inspect_variable(
        ctx: Context,
        name: Annotated[str, Field(description="Variable name, or a dotted attribute path like df.columns.")],
        notebook: Notebook = None,
    ) -> CallToolResult:
        """Describe one variable of a notebook's kernel: frames get schema, shape, memory and head;
        callables their signature and doc; other values a bounded repr."""
        return await delegate(ctx, notebook, "inspect_variable", {"name": name})

    @server.tool(annotations=reading, structured_output=False)
    async def read_rows(
        ctx: Context,
        name: Annotated[str, Field(description="Name of a DataFrame (pandas, polars, pyarrow) or list.")],
        notebook: Notebook = None,
        offset: Annotated[int, Field(description="First row (0-based).")] = 0,
        limit: Annotated[int, Field(description="Number of rows (1-1000).")] = 50,
        columns: Annotated[list[str] | None, Field(description="Only these columns (default: all).")] = None,
    ) -> CallToolResult:
        """One page of rows of a table in a notebook's kernel, as a markdown table plus JSON records."""
        args = {"name": name, "offset": offset, "limit": limit, "columns": columns}
        return await delegate(ctx, notebook, "read_rows", args)

    # paths confined to the root and named relative to it, as nbmcp serve's notebook tools do
    files = NotebookFiles(root_dir)

    async def shared_document(path: str, must_exist: bool = True) -> tuple[str, Any | None]:
        """``path`` relative to the root, and its shared document if the notebook is open (collaboration)."""
        try:
            relative = files.relative(files.resolve(path, must_exist=must_exist))
        except (ValueError, FileNotFoundError) as exc:
            raise ToolError(f"path: {exc}") from exc
        live = kernels.live
        return relative, (await live.document(relative) if live is not None and live.available else None)

    def live_result(data: dict[str, Any], converted: content.Converted | None = None) -> CallToolResult:
        converted = converted or content.Converted([TextContent(type="text", text=json.dumps(data, indent=1))])
        converted = content.apply_budget(converted, options.output_budget, serving.store)
        return CallToolResult(content=list(converted.content), structured_content=data, is_error=converted.is_error)

    def failed(message: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

    @server.tool(annotations=reading, structured_output=False)
    async def notebook_read(
        ctx: Context,
        path: Annotated[str, Field(description="Notebook path, relative to the Jupyter Server's root directory.")],
    ) -> CallToolResult:
        """Cells of a notebook (ids, types, sources, short output summaries): as the human sees it now when it
        is open (unsaved edits included, `live: true`), else as saved on disk."""
        try:
            relative, doc = await shared_document(path)
            if doc is not None:
                return live_result(read_document(doc, relative))
            return await serve.call_tool("notebook_read", {"path": path}, ctx)
        except ToolError as exc:
            return failed(str(exc))

    if read_only:
        return built

    @server.tool(annotations=mutating, structured_output=False)
    async def execute(
        ctx: Context,
        code: Annotated[
            str,
            BeforeValidator(number_as_text),
            Field(description="Python source text to run in the notebook's kernel, like a cell."),
        ],
        notebook: Notebook = None,
        timeout: ExecuteTimeout = None,
        background: RunInBackground = False,
    ) -> CallToolResult:
        """Run code in a notebook's live kernel (its variables are the notebook's). Returns stream output,
        results (tables as markdown + structured rows), images and errors, in order; output streams as
        progress while it runs; at the timeout the kernel is interrupted (variables are kept). With
        background=true it returns a task id at once instead."""
        args = {"code": code, "timeout": timeout, "background": background}
        return await delegate(ctx, notebook, "execute", args)

    async def task_tool(ctx: Context, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        # Tasks are not tied to a notebook: serve's registry holds them by client (owner_middleware) and id.
        try:
            return await serve.call_tool(tool, arguments, ctx)
        except ToolError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)

    @server.tool(annotations=reading, structured_output=False)
    async def task_status(ctx: Context, task_id: TaskId) -> CallToolResult:
        """A background task's state (working, completed, failed, cancelled), elapsed time and the tail of
        its output so far."""
        return await task_tool(ctx, "task_status", {"task_id": task_id})

    @server.tool(annotations=reading, structured_output=False)
    async def task_result(
        ctx: Context,
        task_id: TaskId,
        wait: Annotated[float, Field(description="Seconds to wait for it to finish (0-60).")] = 0,
    ) -> CallToolResult:
        """The result of a finished background task, as execute would have returned it; an error saying it
        still runs otherwise. Finished results stay readable for an hour."""
        return await task_tool(ctx, "task_result", {"task_id": task_id, "wait": wait})

    @server.tool(annotations=mutating, structured_output=False)
    async def task_cancel(ctx: Context, task_id: TaskId) -> CallToolResult:
        """Cancel a background task: its cell is interrupted (variables are kept)."""
        return await task_tool(ctx, "task_cancel", {"task_id": task_id})

    @server.tool(annotations=mutating, structured_output=False)
    async def notebook_edit(
        ctx: Context,
        path: Annotated[str, Field(description="Notebook path, relative to the Jupyter Server's root directory.")],
        version: Annotated[str, Field(description="The version token from notebook_read ('' for a new file).")],
        operations: Annotated[
            list[dict[str, Any]],
            Field(
                description="In order: {op:'insert', source, cell_type?, after?|before?}, "
                "{op:'replace', cell_id, source, cell_type?}, {op:'delete', cell_id}."
            ),
        ],
    ) -> CallToolResult:
        """Insert, replace or delete cells by id. In an open notebook the edit goes into the shared document
        the human sees (cells marked as the assistant's; concurrent edits merge, so `version` is not checked);
        otherwise into the file, refused if it changed since notebook_read."""
        try:
            relative, doc = await shared_document(path, must_exist=False)
            if doc is None:
                return await serve.call_tool(
                    "notebook_edit", {"path": path, "version": version, "operations": operations}, ctx
                )
            kernel_id = next((e["kernel_id"] for e in await kernels.notebooks() if relative in e["notebooks"]), None)
            return live_result(edit_document(doc, relative, operations, kernel_id))
        except KeyError as exc:
            return failed(f"operations: {exc.args[0]}")
        except (ValueError, ToolError) as exc:
            return failed(str(exc))

    @server.tool(annotations=mutating, structured_output=False)
    async def notebook_run(
        ctx: Context,
        path: Annotated[str, Field(description="Notebook path, relative to the Jupyter Server's root directory.")],
        cell_ids: Annotated[
            list[str] | None, Field(description="Cells to run, in this order (default: every code cell).")
        ] = None,
        version: Annotated[
            str | None, Field(description="Refuse if a closed notebook's file is not at this version.")
        ] = None,
    ) -> CallToolResult:
        """Run cells of a notebook in its own kernel (open it first), stopping at the first failure. In an open
        notebook outputs stream into its cells as the human watches; otherwise they are written to the file."""
        try:
            relative, doc = await shared_document(path)
            if doc is None:
                args = {"path": relative, "cell_ids": cell_ids, "version": version}
                return await delegate(ctx, relative, "notebook_run", args)
            kernel_id, _paths = await kernels.resolve(relative)
            handle = await kernels.handle(kernel_id)
            if not isinstance(handle, LiveKernelHandle):
                raise ToolError(f"{relative} is open, but its kernel is not reachable live")
            async with cancel_on_disconnect(ctx):  # a vanished HTTP client's cell is interrupted, as in execute
                data = await run_document_cells(handle, doc, relative, cell_ids, options.timeout)
        except KeyError as exc:
            return failed(f"cell_ids: {exc.args[0]}")
        except (ValueError, ToolError) as exc:
            return failed(str(exc))
        converted = content.Converted([])
        for res in data["results"]:
            line = f"cell {res['cell_id']}: {res['status']} (In [{res['execution_count']}])"
            converted.content.append(TextContent(type="text", text=line))
            converted.extend(content.convert_outputs(res["outputs"], image_max_px=options.image_max_px))
            converted.is_error = converted.is_error or res["status"] != "ok"
            res["outputs"] = [o.get("output_type") for o in res["outputs"]]
        data["kernel"] = handle.session.describe()
        return live_result(data, converted)

    @server.tool(annotations=mutating, structured_output=False)
    async def interrupt(ctx: Context, notebook: Notebook = None) -> CallToolResult:
        """Interrupt the cell running in a notebook's kernel (KeyboardInterrupt); variables are kept."""
        return await delegate(ctx, notebook, "interrupt", {})

    return built
