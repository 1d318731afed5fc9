"""The Jupyter Server's kernels and notebooks, and the MCP tools over them at ``{base_url}nbmcp/mcp``.

The code tools are ``nbmcp serve``'s own (:func:`nbmcp.serve.build_server`): one instance of that server
is built with :class:`JupyterKernels` as its kernel source, and each tool here adds a ``notebook``
argument, selects that notebook's kernel for the call and delegates to the ``serve`` tool of the same
name. Kernels are reached by attaching to their connection files (the human's kernel, never a new one);
nbmcp never shuts a Jupyter kernel down.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BeforeValidator, Field

from .. import content
from .._version import __version__
from ..exceptions import KernelSessionError
from ..sdk import quiet_mcp_server
from ..serve import (
    ExecuteTimeout,
    KernelHandle,
    NotebookFiles,
    RunInBackground,
    ServeOptions,
    ServeServer,
    attach_kernel,
    cancel_on_disconnect,
    number_as_text,
)
from ..serve import build_server as build_serve_server
from ..tasks import tasks_extension
from .live import LiveKernelHandle, SharedNotebooks, edit_document, read_document, run_document_cells

__all__ = ["JupyterKernels", "JupyterMCP", "build_server", "recording_path"]

# The kernel the current tool call acts on (set by the tools below, read by ``JupyterKernels.get``).
_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar("nbmcp_jupyter_kernel", default=None)

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


class JupyterKernels:
    """Kernels of a running Jupyter Server, handed to ``nbmcp serve``'s tools as their kernel source."""

    def __init__(
        self,
        kernel_manager: Any,
        session_manager: Any,
        *,
        base_url: str = "/",
        record_root: Path | None = None,
        live: SharedNotebooks | None = None,
    ) -> None:
        self.kernel_manager = kernel_manager
        self.session_manager = session_manager
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        # Where the assistant's executions are recorded, beside the notebook they ran in (None: not recorded).
        self.record_root = record_root
        # Open notebooks' shared documents (real-time collaboration): executions appear there as cells.
        self.live = live
        self._handles: dict[str, asyncio.Task[KernelHandle]] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._closed = False

    # -- what exists
    async def notebooks(self) -> list[dict[str, Any]]:
        """One entry per running kernel: id, name, state, the notebooks (sessions) on it, its nbmcp server."""
        from ..discovery import list_servers

        sessions = await self.session_manager.list_sessions()
        paths: dict[str, list[str]] = {}
        for s in sessions:
            kernel_id = (s.get("kernel") or {}).get("id")
            if kernel_id:
                paths.setdefault(kernel_id, []).append(s.get("path") or s.get("name") or "")
        served = {str(s.get("kernel_id")) for s in list_servers() if s.get("kernel_id")}
        entries = []
        for kernel_id in list(self.kernel_manager.list_kernel_ids()):
            try:
                model = self.kernel_manager.kernel_model(kernel_id)
            except Exception:  # shut down meanwhile
                continue
            entries.append(
                {
                    "kernel_id": kernel_id,
                    "kernel_name": model.get("name"),
                    "execution_state": model.get("execution_state"),
                    "last_activity": str(model.get("last_activity") or ""),
                    "notebooks": sorted(paths.get(kernel_id, [])),
                    "nbmcp_loaded": kernel_id in served,
                    "mcp_path": f"{self.base_url}nbmcp/kernels/{kernel_id}/mcp" if kernel_id in served else None,
                }
            )
        return entries

    async def resolve(self, notebook: str | None) -> tuple[str, list[str]]:
        """The kernel id (and notebook paths) of ``notebook``: a path, a kernel id or an id prefix."""
        entries = await self.notebooks()
        self._prune({e["kernel_id"] for e in entries})
        if not entries:
            raise ToolError("no kernels are running on this Jupyter Server: open a notebook first")
        if notebook is None or not notebook.strip():
            if len(entries) == 1:
                return entries[0]["kernel_id"], entries[0]["notebooks"]
            raise ToolError("several kernels are running; say which with `notebook`: " + _listing(entries))
        wanted = notebook.strip()
        path = wanted.lstrip("/")
        for matcher in (
            lambda e: e["kernel_id"] == wanted,
            lambda e: path in e["notebooks"],
            lambda e: any(os.path.basename(p) == path for p in e["notebooks"]),
            lambda e: len(wanted) >= 4 and e["kernel_id"].startswith(wanted),
        ):
            found = [e for e in entries if matcher(e)]
            if len(found) == 1:
                return found[0]["kernel_id"], found[0]["notebooks"]
            if len(found) > 1:
                raise ToolError(f"{notebook!r} matches several kernels: " + _listing(found))
        raise ToolError(f"no notebook or kernel {notebook!r} on this Jupyter Server; running: " + _listing(entries))

    # -- the kernel source of nbmcp.serve.build_server
    async def get(self, ctx: Context | None) -> KernelHandle:
        kernel_id = _selected.get()
        if kernel_id is None:
            raise ToolError("no kernel selected for this call")
        return await self.handle(kernel_id)

    async def handle(self, kernel_id: str) -> KernelHandle:
        """An attached session to ``kernel_id`` (cached; re-attached after the kernel restarted or died)."""
        if self._closed:
            raise ToolError("the Jupyter Server is shutting down")
        task = self._handles.get(kernel_id)
        if task is not None and task.done():
            handle = None if task.cancelled() or task.exception() is not None else task.result()
            if handle is None or not await handle.session.is_alive():
                self._handles.pop(kernel_id, None)
                if handle is not None:
                    await handle.close()
                task = None
        if task is None:
            task = asyncio.ensure_future(self._attach(kernel_id))
            self._handles[kernel_id] = task
        try:
            return await asyncio.shield(task)
        except KernelSessionError as exc:
            self._handles.pop(kernel_id, None)
            raise ToolError(f"cannot reach kernel {kernel_id}: {exc}") from exc

    async def _attach(self, kernel_id: str) -> KernelHandle:
        try:
            km = self.kernel_manager.get_kernel(kernel_id)
        except KeyError as exc:
            raise KernelSessionError(f"kernel {kernel_id} is gone") from exc
        path = getattr(km, "connection_file", None)
        if not path or not Path(path).exists():
            # A kernel whose connection file was removed or never written: recreate it privately.
            path = await asyncio.to_thread(_write_private_connection_file, kernel_id, km)
        record_to = None
        if self.record_root is not None:
            notebooks = next((e["notebooks"] for e in await self.notebooks() if e["kernel_id"] == kernel_id), [])
            # the human sees what the assistant ran in their kernel, with its outputs, beside their notebook
            record_to = recording_path(self.record_root, kernel_id, notebooks)
        handle = await attach_kernel(path, record_to=record_to)
        if self.live is None:
            return handle
        return LiveKernelHandle(handle, kernel_id, self.live, lambda: self._notebooks_of(kernel_id))

    async def _notebooks_of(self, kernel_id: str) -> list[str]:
        sessions = await self.session_manager.list_sessions()
        return sorted(s.get("path") or "" for s in sessions if (s.get("kernel") or {}).get("id") == kernel_id)

    def _prune(self, alive: set[str]) -> None:
        """Disconnect from kernels the Jupyter Server no longer has."""
        for kernel_id in [k for k in self._handles if k not in alive]:
            self._handles.pop(kernel_id).add_done_callback(self._close_later)

    def _close_later(self, task: asyncio.Task[KernelHandle]) -> None:
        if not task.cancelled() and task.exception() is None:
            closing = asyncio.ensure_future(task.result().close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        """Disconnect from every kernel (they belong to the Jupyter Server: none is shut down)."""
        self._closed = True
        tasks, self._handles = list(self._handles.values()), {}
        for task in tasks:
            with contextlib.suppress(BaseException):
                await (await task).close()


def recording_path(root: Path, kernel_id: str, notebooks: list[str]) -> Path:
    """``analysis.ipynb`` -> ``analysis.assistant.ipynb`` beside it, inside ``root``.

    A kernel with no notebook gets its own file in ``root``, and so does one whose session path leaves the
    root (a session may name any path: ``..``, an absolute path, a symlink pointing out), with the same
    confinement as the notebook tools.
    """
    root = root.resolve()
    if notebooks:
        notebook = (root / notebooks[0]).resolve()
        recording = notebook.with_name(notebook.stem + ".assistant.ipynb").resolve()
        if recording.is_relative_to(root):
            return recording
    return root / f"nbmcp-session-{kernel_id[:8]}.assistant.ipynb"


def _write_private_connection_file(kernel_id: str, km: Any) -> str:
    import tempfile

    from jupyter_client.connect import write_connection_file

    info = km.get_connection_info()
    if not info.get("shell_port"):
        raise KernelSessionError(
            f"kernel {kernel_id} is not a local ZMQ kernel (a gateway or remote kernel?): "
            "use `nbmcp serve --server-url` against the server that runs it"
        )
    directory = tempfile.mkdtemp(prefix="nbmcp-jupyter-")
    fname = os.path.join(directory, f"kernel-{kernel_id}.json")
    write_connection_file(fname, **info)
    return fname


def _listing(entries: list[dict[str, Any]]) -> str:
    parts = []
    for e in entries:
        where = ", ".join(e["notebooks"]) or "no notebook"
        parts.append(f"{where} (kernel {e['kernel_id']})")
    return "; ".join(parts)


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
        lambda: MCPServer("nbmcp-jupyter", version=__version__, instructions=_INSTRUCTIONS, extensions=extensions)
    )
    built = JupyterMCP(server, kernels, serving)
    reading = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    mutating = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    async def delegate(ctx: Context, notebook: str | None, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        kernel_id, paths = await kernels.resolve(notebook)
        token = _selected.set(kernel_id)
        try:
            result = await serve.call_tool(tool, arguments, ctx)
        except ToolError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        finally:
            _selected.reset(token)
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
        # Tasks are not tied to a notebook: serve's registry holds them all, by unguessable id.
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
