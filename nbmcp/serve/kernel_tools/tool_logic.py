"""What serve's kernel tools do (:class:`ServeTools`); :mod:`.catalog` declares them and delegates here.

A kernel source whose kernels belong to someone else (the Jupyter Server extension's) subclasses ``ServeTools``
where a tool must act differently there: :meth:`ServeTools.restart_kernel`, :meth:`ServeTools.switch_refusal`, the
notebook tools; :attr:`ServeTools.description_notes` then says so in the tool's description.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult

from ... import content
from ...exceptions import KernelDeadError, KernelSessionError, StaleNotebookError
from ...tasks import TaskRegistry, status_result
from ..kernel.execution import ExecutionOutcome, OutputCallback
from ..languages import adapter_for
from ..provider import ClientDisconnected, KernelHandle, KernelSource, ServeOptions, cancel_on_disconnect
from .inspection import describe_text, rows_text, variables_text
from .kernelspecs import kernelspecs_of, kernelspecs_text, switch_refusal
from .logs import forward_stderr
from .outputs import ProgressPump, error_result, kernel_label, outcome_result, output_kinds, text_result
from .query import run_query
from .tool_arguments import check_name

__all__ = ["ServeTools"]


class ServeTools:
    """What the tools do, given the server's options and kernel source."""

    # What a subclass adds to a tool's declared description (tool name -> a sentence), where it acts differently.
    description_notes: ClassVar[Mapping[str, str]] = {}

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
            from ..notebook.notebooks import NotebookFiles

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
        adapter = adapter_for(handle.session)
        data = await adapter.list_variables(handle.session, limit)
        kernel = handle.session.describe()
        text = variables_text(data, kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(text, data))

    async def inspect_variable(self, ctx: Context, name: str) -> CallToolResult:
        name = check_name(name)
        handle = await self.kernels.get(ctx)
        data = await adapter_for(handle.session).inspect_variable(handle.session, name, 4000)
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"inspect_variable: {data['error']}", kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(describe_text(data), data))

    async def read_rows(
        self, ctx: Context, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> CallToolResult:
        name = check_name(name)
        if offset < 0:
            raise ToolError(f"offset must be >= 0, got {offset}")
        if not 1 <= limit <= 1000:
            raise ToolError(f"limit must be between 1 and 1000, got {limit}")
        handle = await self.kernels.get(ctx)
        data = await adapter_for(handle.session).read_rows(handle.session, name, int(offset), int(limit), columns)
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"read_rows: {data['error']}", kernel)
        data["kernel"] = kernel
        return self.budgeted(text_result(rows_text(data, name), data))

    async def query(self, ctx: Context, sql: str, limit: int, save_as: str | None) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        refusal = adapter_for(handle.session).cannot("query", handle.session)
        if refusal is not None:
            return error_result(refusal, handle.session.describe())
        opts = self.options
        result = await run_query(
            handle.session,
            sql,
            limit,
            save_as,
            timeout=opts.query_timeout,
            read_only=opts.read_only,
            max_spill_bytes=opts.query_max_spill_bytes,
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
        session = handle.session
        kernel = session.describe()
        if session.execution_state == "idle" and not session.busy:
            # no signal: IRkernel (and other kernels) die of an interrupt that arrives between cells
            return text_result(
                f"{kernel_label(kernel)} is idle: nothing to interrupt", {"status": "idle", "kernel": kernel}
            )
        try:
            await session.interrupt()
        except Exception as exc:
            return error_result(f"could not interrupt {kernel_label(kernel)}: {exc}", kernel)
        if not await session.outlives_interrupt():
            return error_result(
                f"{kernel_label(kernel)} died of the interrupt: this kernel ends on SIGINT instead of stopping the "
                "cell. Call restart() for a fresh one (all variables are lost); next time, bound long cells with "
                "execute(timeout=...) or background=true and task_cancel, which interrupt the same way.",
                session.describe(),
            )
        return text_result(f"interrupted {kernel_label(kernel)}", {"status": "ok", "kernel": kernel})

    async def list_kernelspecs(self, ctx: Context) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        try:
            specs = await kernelspecs_of(handle.session)
        except Exception as exc:
            return error_result(f"list_kernelspecs: {exc}", handle.session.describe())
        kernel = handle.session.describe()
        text = kernelspecs_text(specs, handle.session.kernel_name)
        return text_result(text, {"kernelspecs": specs, "current": handle.session.kernel_name, "kernel": kernel})

    async def restart(self, ctx: Context, kernel_name: str | None = None) -> CallToolResult:
        handle = await self.kernels.get(ctx)
        session = handle.session
        if kernel_name is not None and kernel_name != session.kernel_name:
            try:
                refusal = await self.switch_refusal(handle, kernel_name)
            except Exception as exc:
                return error_result(f"restart: {exc}", session.describe())
            if refusal is not None:
                return error_result(f"restart: {refusal}", session.describe())
        started = time.monotonic()
        try:
            handle = await self.restart_kernel(handle, kernel_name)
        except Exception as exc:
            return error_result(f"restart failed: {exc}", handle.session.describe())
        kernel = handle.session.describe()
        took = time.monotonic() - started
        return text_result(
            f"restarted {kernel_label(kernel)} in {took:.1f} s; all variables are gone",
            {"status": "ok", "kernel": kernel, "duration_ms": round(took * 1000, 1)},
        )

    async def switch_refusal(self, handle: KernelHandle, kernel_name: str) -> str | None:
        """Why ``restart(kernel_name=...)`` may not switch the kernel of ``handle`` to ``kernel_name``; None if it
        may."""
        specs = await kernelspecs_of(handle.session)
        return switch_refusal(handle.session, handle.recorder is not None, specs, kernel_name)

    async def restart_kernel(self, handle: KernelHandle, kernel_name: str | None) -> KernelHandle:
        """Restart the kernel of ``handle`` (as ``kernel_name`` when given) and return the handle to use now."""
        await handle.session.restart(kernel_name=kernel_name)
        return handle

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
