"""The MCP tools at ``{base_url}nbmcp/mcp``: the Jupyter Server's notebooks, and ``nbmcp serve``'s kernel tools.

The kernel tools are serve's own catalog (:func:`nbmcp.serve.add_kernel_tools`) over :class:`JupyterKernels`,
whose ``notebook`` argument selects the notebook's kernel for a call. What is this wing's own: ``list_notebooks``,
and :class:`JupyterTools`, serve's tool logic where a Jupyter Server's kernels and notebooks ask for something
else -- an open notebook's notebook tools act on its live document (the one the human sees), and a restart goes
through the Jupyter Server, which owns the kernel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from .. import content
from .._version import __version__
from ..sdk import ToolServer, quiet_mcp_server
from ..serve import KernelHandle, ServeOptions, ServeTools, add_kernel_tools, cancel_on_disconnect, client_of
from ..tasks import TASK_GRACE, owner_middleware, tasks_extension
from .kernels import JupyterKernels, selected_kernel
from .live import LiveKernelHandle, edit_document, read_document, run_document_cells

__all__ = ["JupyterMCP", "JupyterTools", "build_server"]

_INSTRUCTIONS = """\
The kernels of a Jupyter Server: the notebooks a person has open. `list_notebooks` says which notebook \
runs on which kernel; the kernel tools take `notebook` (a notebook path or a kernel id) and act on that \
notebook's live kernel: `execute` runs code there like a cell (variables are shared with the notebook), \
`list_variables`, `inspect_variable` and `read_rows` inspect it, `query` runs read-only SQL over its DataFrames, \
`restart` restarts it. `notebook_read`, `notebook_edit` and `notebook_run` work on notebook files by path (an open \
notebook's live document, which the human sees). Cut outputs are readable in full at nbmcp://outputs/{id}. \
Notebooks that ran `%load_ext nbmcp` also serve their own tools at their `mcp_url`."""

_READ_ONLY_INSTRUCTIONS = """\
The kernels of a Jupyter Server, read-only: `list_notebooks` says which notebook runs on which kernel; \
`list_variables`, `inspect_variable`, `read_rows` and `query` (read-only SQL over DataFrames) take `notebook` (a \
notebook path or a kernel id) and inspect that notebook's live kernel; `notebook_read` reads a notebook by path. \
Code execution is disabled."""


@dataclass
class JupyterMCP:
    """The MCP server of ``{base_url}nbmcp/mcp`` and what it is built on."""

    mcp: MCPServer
    kernels: JupyterKernels
    tools: JupyterTools  # what serve's kernel tools do here


class JupyterTools(ServeTools):
    """Serve's tool logic over a Jupyter Server's kernels: open notebooks are edited and run live, restarts go
    through the server."""

    kernels: JupyterKernels

    description_notes = {
        "notebook_read": "An open notebook is read as the human sees it now (unsaved edits included, `live: true`).",
        "notebook_edit": "In an open notebook the edit goes into the shared document the human sees (cells marked "
        "as the assistant's; concurrent edits merge, so `version` is not checked).",
        "notebook_run": "The cells run in the notebook's own kernel (open it first); in an open notebook their "
        "outputs stream into its cells as the human watches.",
        "restart": "The Jupyter Server restarts the notebook's kernel, which stays the notebook's.",
    }

    # -- notebook files: an open notebook's live document

    async def shared_document(self, path: str, must_exist: bool = True) -> tuple[str, Any | None]:
        """``path`` relative to the root, and its shared document if the notebook is open (collaboration)."""
        try:
            relative = self.files.relative(self.files.resolve(path, must_exist=must_exist))
        except (ValueError, FileNotFoundError) as exc:
            raise ToolError(f"path: {exc}") from exc
        live = self.kernels.live
        return relative, (await live.document(relative) if live is not None and live.available else None)

    def live_result(self, data: dict[str, Any], converted: content.Converted | None = None) -> CallToolResult:
        converted = converted or content.Converted([TextContent(type="text", text=json.dumps(data, indent=1))])
        converted = content.apply_budget(converted, self.options.output_budget, self.store)
        return CallToolResult(content=list(converted.content), structured_content=data, is_error=converted.is_error)

    async def notebook_read(self, path: str) -> CallToolResult:
        relative, doc = await self.shared_document(path)
        if doc is None:
            return await super().notebook_read(path)
        return self.live_result(read_document(doc, relative))

    async def notebook_edit(self, path: str, version: str, operations: list[dict[str, Any]]) -> CallToolResult:
        relative, doc = await self.shared_document(path, must_exist=False)
        if doc is None:
            return await super().notebook_edit(path, version, operations)
        entries = await self.kernels.notebooks()
        kernel_id = next((e["kernel_id"] for e in entries if relative in e["notebooks"]), None)
        try:
            return self.live_result(edit_document(doc, relative, operations, kernel_id))
        except KeyError as exc:
            raise ToolError(f"operations: {exc.args[0]}") from exc
        except ValueError as exc:
            raise ToolError(str(exc)) from exc

    async def notebook_run(
        self, ctx: Context, path: str, cell_ids: list[str] | None, version: str | None
    ) -> CallToolResult:
        relative, doc = await self.shared_document(path)
        if doc is None:  # a closed notebook: its file, run in its kernel
            run_file = super().notebook_run
            return await self.kernels.run_on(relative, lambda: run_file(ctx, relative, cell_ids, version))
        kernel_id, _paths = await self.kernels.resolve(relative)
        handle = await self.kernels.handle(kernel_id)
        if not isinstance(handle, LiveKernelHandle):
            raise ToolError(f"{relative} is open, but its kernel is not reachable live")
        try:
            async with cancel_on_disconnect(ctx):  # a vanished HTTP client's cell is interrupted, as in execute
                data = await run_document_cells(handle, doc, relative, cell_ids, self.options.timeout)
        except KeyError as exc:
            raise ToolError(f"cell_ids: {exc.args[0]}") from exc
        except ValueError as exc:
            raise ToolError(str(exc)) from exc
        converted = content.Converted([])
        for res in data["results"]:
            line = f"cell {res['cell_id']}: {res['status']} (In [{res['execution_count']}])"
            converted.content.append(TextContent(type="text", text=line))
            converted.extend(content.convert_outputs(res["outputs"], image_max_px=self.options.image_max_px))
            converted.is_error = converted.is_error or res["status"] != "ok"
            res["outputs"] = [o.get("output_type") for o in res["outputs"]]
        data["kernel"] = handle.session.describe()
        return self.live_result(data, converted)

    # -- restart: the Jupyter Server's

    async def switch_refusal(self, handle: KernelHandle, kernel_name: str) -> str | None:
        return (
            f"a notebook's kernelspec is changed in JupyterLab (Kernel > Change Kernel...), not to {kernel_name!r} "
            "from here; restart() without kernel_name restarts the notebook's kernel as it is"
        )

    async def restart_kernel(self, handle: KernelHandle, kernel_name: str | None) -> KernelHandle:
        kernel_id = selected_kernel.get()
        if kernel_id is None:
            raise ToolError("no kernel selected for this call")
        return await self.kernels.restart(kernel_id)


def build_server(
    kernels: JupyterKernels,
    *,
    root_dir: str | Path,
    read_only: bool = False,
    timeout: float = 60.0,
    output_budget: int | None = None,
    image_max_px: int | None = None,
    task_grace: float = TASK_GRACE,
) -> JupyterMCP:
    """The MCP server of ``{base_url}nbmcp/mcp``: ``list_notebooks``, and serve's kernel tools per notebook."""
    options = ServeOptions(
        root=Path(root_dir),
        record=False,
        timeout=timeout,
        output_budget=output_budget or content.DEFAULT_OUTPUT_BUDGET,
        image_max_px=image_max_px or content.DEFAULT_IMAGE_MAX_PX,
        read_only=read_only,
        task_grace=task_grace,
        transport="http",
        shared=True,
    )
    tools = JupyterTools(options, kernels)
    server: MCPServer = quiet_mcp_server(
        lambda: ToolServer(
            "nbmcp-jupyter",
            version=__version__,
            instructions=_READ_ONLY_INSTRUCTIONS if read_only else _INSTRUCTIONS,
            # 2026 era: a client with the tasks extension gets `execute` as a task it polls (nbmcp.tasks)
            extensions=[] if read_only else [tasks_extension(tools.tasks, grace=options.task_grace)],
            middleware=[owner_middleware(client_of)],  # a client's background tasks are its own
        )
    )

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False),
        structured_output=False,
    )
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

    add_kernel_tools(server, tools, kernels.selector)
    return JupyterMCP(server, kernels, tools)
