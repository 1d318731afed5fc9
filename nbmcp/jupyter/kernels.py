"""The Jupyter Server's kernels and notebooks, as the kernel source of ``nbmcp serve``'s tools.

:class:`JupyterKernels` says which notebook runs on which kernel, adds the ``notebook`` argument to serve's kernel
tools (its :attr:`~JupyterKernels.selector`) and hands them the kernel a call selected (:data:`selected_kernel`).
Kernels are reached by attaching to their connection files (the human's kernel, never a new one); nbmcp never
shuts a Jupyter kernel down, and restarts one only through the Jupyter Server, which owns it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from ..exceptions import KernelSessionError
from ..serve import KernelHandle, KernelSelector, attach_kernel
from .live import LiveKernelHandle, SharedNotebooks

__all__ = ["NOTEBOOK", "JupyterKernels", "recording_path", "selected_kernel"]

log = logging.getLogger(__name__)

# The kernel the current tool call acts on (set by ``JupyterKernels.run_on``, read by ``JupyterKernels.get``).
selected_kernel: contextvars.ContextVar[str | None] = contextvars.ContextVar("nbmcp_jupyter_kernel", default=None)

# What the `notebook` argument of serve's kernel tools says on a Jupyter Server.
NOTEBOOK = "Notebook path (as in list_notebooks) or kernel id; optional when one kernel runs."


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

    # -- the kernel source of serve's kernel tools
    @property
    def selector(self) -> KernelSelector:
        """The ``notebook`` argument of serve's kernel tools here: which notebook's kernel a call acts on."""
        return KernelSelector("notebook", NOTEBOOK, self.run_on)

    async def run_on(self, notebook: str | None, call: Callable[[], Awaitable[CallToolResult]]) -> CallToolResult:
        """``call()`` on the kernel of ``notebook`` (see :meth:`resolve`); its result names the notebooks on it."""
        kernel_id, paths = await self.resolve(notebook)
        token = selected_kernel.set(kernel_id)
        try:
            result = await call()
        finally:
            selected_kernel.reset(token)
        if isinstance(result, CallToolResult) and isinstance(result.structured_content, dict):
            result.structured_content["notebooks"] = paths
        return result

    async def get(self, ctx: Context | None) -> KernelHandle:
        kernel_id = selected_kernel.get()
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

    async def restart(self, kernel_id: str) -> KernelHandle:
        """Restart ``kernel_id`` through the Jupyter Server (its owner: the notebook stays on it, and its frontend
        sees the restart), then attach to the fresh process."""
        task = self._handles.pop(kernel_id, None)
        if task is not None:
            task.add_done_callback(self._close_later)  # the old process's channels
        await self.kernel_manager.restart_kernel(kernel_id)  # waits until the fresh process answers
        return await self.handle(kernel_id)

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
        if tasks:
            await asyncio.wait(tasks)  # attaches still under way end first; a cancellation of ours goes through
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                continue  # never attached: nothing to disconnect
            try:
                await task.result().close()
            except Exception:  # one kernel's failed disconnect does not keep the others connected
                log.warning("nbmcp: could not disconnect from a kernel", exc_info=True)


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
