"""The in-kernel ``execute(..., background=True)``: the call is approved now, runs later as a task.

The approval is asked in the request (the owner sees the code before anything is queued); then the code is
queued for the kernel's main thread, between cells, like any in-kernel ``execute``, but without the
main-thread timeout, and the request returns a task id at once (:mod:`nbmcp.tasks`). ``task_status`` shows
what the code printed so far, ``task_result`` the result ``execute`` would have returned, ``task_cancel``
stops it: a call still queued never runs; a running one gets a ``KeyboardInterrupt`` (SIGINT to the kernel's
main thread, with Python's default handler installed only while the task's own code runs, so the owner's
cells are never interrupted by it).

While the task runs it holds the kernel's main thread, as every in-kernel ``execute`` does: the owner's next
cell waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import threading
from typing import Any

from mcp.types import CallToolResult, TextContent

from ...exceptions import ApprovalDenied
from ...tasks import BackgroundTask, TaskRegistry, status_result
from ..oversight.activity import mark_outcome
from ..registry import ToolSpec
from ..views.objects import builtin_tool
from . import capture

__all__ = ["BACKGROUND_TIMEOUT", "BackgroundExecutes"]

BACKGROUND_TIMEOUT = 24 * 3600.0  # a background cell is bounded by a day, not by the main-thread timeout


class _Run:
    """One queued or running background call: its output so far, and how to stop it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = False
        self.main_thread: int | None = None  # set while the task's code runs on the main thread
        self.buffer: Any = None

    def wrap(self, fn: Any) -> Any:
        def run(**kwargs: Any) -> Any:  # on the kernel's main thread
            with self.lock:
                if self.cancelled:
                    raise KeyboardInterrupt("cancelled before it started")
                self.main_thread = threading.get_ident()
                previous = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                with capture.capture_output() as buffer:
                    self.buffer = buffer
                    try:
                        return fn(**kwargs)
                    finally:
                        printed = buffer.getvalue()
            finally:
                with self.lock:
                    self.main_thread = None
                    signal.signal(signal.SIGINT, previous)
                sys.stdout.write(printed)  # into the call's own capture: the result shows it, as in the foreground

        return run

    def peek(self) -> str:
        buffer = self.buffer
        return buffer.getvalue() if buffer is not None else ""

    def stop(self) -> None:
        """Never start; if running, interrupt the task's own code (and nothing else)."""
        with self.lock:
            self.cancelled = True
            if self.main_thread is not None:
                signal.pthread_kill(self.main_thread, signal.SIGINT)


class BackgroundExecutes:
    """Background runs of a main-thread tool (``execute``) and the ``task_*`` tools that read them."""

    def __init__(self, pipeline: Any, tasks: TaskRegistry | None = None) -> None:
        self.pipeline = pipeline
        self.tasks = tasks or TaskRegistry()

    async def start(self, spec: ToolSpec, kwargs: dict[str, Any], context: Any) -> CallToolResult:
        """Approve ``spec``'s call now, then run it as a task; the task id comes back at once."""
        arguments = {k: v for k, v in kwargs.items() if k != "background"}
        try:
            if spec.requires_approval:
                await self.pipeline.approve(spec.name, arguments, context)
        except ApprovalDenied as exc:
            return mark_outcome(_text(str(exc), is_error=True), "denied")
        run = _Run()
        queued = dataclasses.replace(spec, fn=run.wrap(spec.fn), requires_approval=False, timeout=BACKGROUND_TIMEOUT)

        async def work(task: BackgroundTask) -> CallToolResult:
            try:
                return await self.pipeline.run(queued, dict(arguments))
            except asyncio.CancelledError:
                run.stop()
                raise

        code = str(arguments.get("code", "")).strip()
        summary = f"{spec.name} {code.splitlines()[0][:60]!r}" if code else spec.name
        try:
            task = self.tasks.start(spec.name, summary, work)
        except RuntimeError as exc:
            return _text(str(exc), is_error=True)
        task.peek = run.peek
        text = (
            f"started task {task.id}: the code is queued for the kernel's main thread (between cells). Poll "
            f"task_status({task.id!r}), fetch task_result({task.id!r}) when done, task_cancel({task.id!r}) stops it."
        )
        return _text(text, data={"task_id": task.id, "status": task.status})

    def tools(self) -> dict[str, ToolSpec]:
        """``task_status``, ``task_result``, ``task_cancel`` as built-in tools."""

        def task_status(task_id: str) -> Any:
            """A background task's state (working, completed, failed, cancelled), elapsed time and its output so far.

            Args:
                task_id: the id execute(..., background=true) returned.
            """
            return status_result(self.tasks.get(task_id))

        async def task_result(task_id: str, wait: float = 0) -> Any:
            """The result of a finished background task, as execute would have returned it; an error saying it
            still runs otherwise. Finished results stay readable for an hour.

            Args:
                task_id: the id execute(..., background=true) returned.
                wait: seconds to wait for it to finish (0-60).
            """
            if not 0 <= wait <= 60:
                raise ValueError(f"wait must be between 0 and 60 seconds, got {wait}")
            task = await self.tasks.wait(task_id, wait)
            return task.result if task.result is not None else status_result(task, not_finished_error=True)

        async def task_cancel(task_id: str) -> Any:
            """Cancel a background task: not started, it never runs; running, it gets a KeyboardInterrupt.

            Args:
                task_id: the id execute(..., background=true) returned.
            """
            return status_result(await self.tasks.cancel(task_id))

        specs = [builtin_tool(task_status, read_only=True), builtin_tool(task_result, read_only=True)]
        specs.append(builtin_tool(task_cancel))
        return {spec.name: spec for spec in specs}


def _text(text: str, *, is_error: bool = False, data: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data, is_error=is_error)
