"""The server in an IPython shell: main-thread tools, the opt-in ``execute``, and the post-cell change check.

Used by the extension (``%load_ext nbmcp``), by ``%mcp start`` and by ``nbmcp.start()`` inside a kernel, so
that however the server starts, it gets the same hooks and prints the same banner.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import sys
from collections.abc import Callable
from typing import Any

from . import lifecycle

__all__ = [
    "banner",
    "execute_in_shell",
    "main_thread_runner",
    "post_run_cell",
    "running_shell",
    "start_in_shell",
    "unhook_shell",
]

_hooked_shell: Any = None


def running_shell() -> Any:
    """The running IPython shell, or None (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def main_thread_runner(shell: Any) -> Callable[[Callable[[], Any]], concurrent.futures.Future[Any]] | None:
    """Run callables on the kernel's main thread, between cells (None outside an ipykernel)."""
    kernel = getattr(shell, "kernel", None)
    io_loop = getattr(kernel, "io_loop", None)
    if io_loop is None:
        return None
    # Held while a cell runs (async cells included): taking it means "between cells". ipykernel has no public
    # name for it; without it (another kernel), callables still run on the main loop, just not between cells.
    cell_lock = getattr(kernel, "_main_asyncio_lock", None)

    def run(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                if cell_lock is not None:
                    async with cell_lock:
                        result = fn()
                else:
                    result = fn()
            except asyncio.CancelledError:  # the kernel's loop is stopping: the caller learns of it, the cancel goes on
                future.set_exception(RuntimeError("the kernel's event loop stopped before the call finished"))
                raise
            except BaseException as exc:  # fn's KeyboardInterrupt/SystemExit: its caller's, never the human's loop's
                future.set_exception(exc)
            else:
                future.set_result(result)

        io_loop.add_callback(job)
        return future

    return run


def execute_in_shell(shell: Any, code: str) -> Any:
    """Run ``code`` in the user namespace (main thread, between cells); return what it displayed and its value.

    Not ``shell.run_cell``: that would publish results and tracebacks into the user's last cell.
    """
    from IPython.utils.capture import capture_output

    from .. import content

    server = lifecycle.current_server()
    image_max_px = server.mcp_server.image_max_px if server is not None else content.DEFAULT_IMAGE_MAX_PX
    source = shell.transform_cell(code)
    tree = ast.parse(source, filename="<mcp-execute>")
    last_expr = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last_expr = ast.Expression(tree.body.pop().value)
    namespace = shell.user_ns
    outputs: list[Any] = []
    with capture_output(stdout=False, stderr=False, display=True) as captured:
        exec(compile(tree, "<mcp-execute>", "exec"), namespace)
        value = eval(compile(last_expr, "<mcp-execute>", "eval"), namespace) if last_expr is not None else None
    for output in captured.outputs:
        outputs.extend(content.convert_mime_bundle(output.data, output.metadata, image_max_px=image_max_px).content)
    # As the cell's Out would show it (IPython's formatter: a tuple is `(5, 2)`), like `nbmcp serve`'s execute.
    outputs.extend(content.convert_display(value, image_max_px=image_max_px).content)
    if not outputs:  # say so, rather than an empty result a client may take for a failure
        return "(done: the code displayed nothing and has no value)"
    return content.Converted(outputs)


def start_in_shell(shell: Any, **options: Any) -> lifecycle.ServerInfo:
    """Start the server with the kernel's hooks: main-thread tools, opt-in execute, post-cell change checks."""
    global _hooked_shell
    runner = main_thread_runner(shell)
    info = lifecycle.start_server(
        shell=shell,
        main_thread_runner=runner,
        execute_runner=(lambda code: execute_in_shell(shell, code)) if runner is not None else None,
        **options,
    )
    if _hooked_shell is not shell:
        shell.events.register("post_run_cell", post_run_cell)
        _hooked_shell = shell
    return info


def unhook_shell(shell: Any) -> None:
    """Undo :func:`start_in_shell`'s post-cell hook (the server itself is stopped by the caller)."""
    global _hooked_shell
    if _hooked_shell is shell:
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", post_run_cell)
        _hooked_shell = None


def post_run_cell(*_: Any) -> None:
    """IPython's post_run_cell hook: tell subscribers about exposed objects the cell changed (subscribed ones only)."""
    server = lifecycle.current_server()
    if server is not None:
        server.mcp_server.check_objects()


def banner(info: lifecycle.ServerInfo) -> str:
    """What ``%load_ext nbmcp`` and ``%mcp start`` print: where the server is and how to connect."""
    lines = [
        f"nbmcp: MCP server for this kernel at {info.url}",
        f"  token: in {info.connection_file} (send it as 'Authorization: Bearer <token>')",
        "  connect: `%mcp config claude` (stdio, through `nbmcp bridge`) or `%mcp config vscode|cursor` (HTTP)"
        " prints a ready config",
        "  publish: @nbmcp.tool, nbmcp.expose(df, 'name'); `%mcp` shows status",
    ]
    if info.notice:
        lines.insert(1, f"  note: {info.notice}")
    return "\n".join(lines)
