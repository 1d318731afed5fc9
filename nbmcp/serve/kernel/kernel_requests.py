"""What a :class:`~.session.KernelSession` asks of its kernel: execute (one at a time, or in a subshell), inspect,
interrupt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ...exceptions import KernelDeadError, KernelSessionError
from .execution import ExecutionOutcome, KernelLink, OutputCallback, OutputsCallback, drain, run_execute
from .message_router import MessageRouter

__all__ = ["INTERRUPT_SETTLE", "KernelRequests"]

INTERRUPT_SETTLE = 2.0  # seconds an interrupt is given to stop the cell (or kill a kernel that dies of it)


class KernelRequests(MessageRouter):
    """Execution, inspection and interrupts over the router; the base of :class:`~.session.KernelSession`, which
    owns the kernel (start, attach, restart, shutdown, liveness: ``is_alive``, ``dead_message``,
    ``supports_subshells``) and sets the state below."""

    output_limit: int
    kernel_id: str | None
    last_outcome: ExecutionOutcome | None
    _api: Any
    _link: KernelLink
    _execute_lock: asyncio.Lock
    _subshell_id: str | None
    _subshell_lock: asyncio.Lock
    _background: set[asyncio.Future[Any]]
    _draining: asyncio.Future[None] | None

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        subshell: bool = False,
        lock: bool = True,
        interrupt: bool = True,
        on_outputs: OutputsCallback | None = None,
    ) -> ExecutionOutcome:
        """Run ``code``; await its reply and its iopub messages until the kernel is idle.

        On ``timeout`` the kernel is interrupted and the partial outputs are returned (status
        ``timeout``). If the awaiting task is cancelled, the kernel is interrupted before the
        cancellation propagates. ``on_output(name, text)`` sees stream text as it arrives, ``on_outputs(outputs)``
        the whole output list each time an output (of any kind) arrives or changes.
        ``subshell=True`` runs in a kernel subshell (ipykernel 7) so it does not wait for a running cell.
        ``interrupt=False`` gives up at the timeout without interrupting: an interrupt stops the kernel's
        main thread, that is whatever cell the human is running, so subshell requests never interrupt.
        """
        interrupt = interrupt and not subshell
        if self._closed:
            raise KernelSessionError("the kernel session is closed")
        if not await self.is_alive():
            raise KernelDeadError(self.dead_message())
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": False,
            "stop_on_error": not silent,
        }
        subshell_id = await self._get_subshell() if subshell else None
        if not lock or subshell:
            return await self._execute(content, subshell_id, timeout, on_output, interrupt, on_outputs)
        # The timeout counts from now: waiting behind other executions (background tasks) uses it up too.
        asked = time.monotonic()
        try:
            await asyncio.wait_for(self._execute_lock.acquire(), timeout)
        except asyncio.TimeoutError:
            return ExecutionOutcome(
                status="timeout",
                timed_out=True,
                duration=time.monotonic() - asked,
                message=f"the kernel stayed busy with other executions (background tasks?) for the whole timeout "
                f"of {timeout:g} s, so this code did not run; run it later, with a longer timeout, or cancel them",
            )
        try:
            left = None if timeout is None else max(timeout - (time.monotonic() - asked), 0.001)
            return await self._execute(content, subshell_id, left, on_output, interrupt, on_outputs)
        finally:
            self._execute_lock.release()

    async def _execute(
        self,
        content: dict[str, Any],
        subshell_id: str | None,
        timeout: float | None,
        on_output: OutputCallback | None,
        interrupt: bool,
        on_outputs: OutputsCallback | None = None,
    ) -> ExecutionOutcome:
        # This request's outcome from now on: cancelled before it is sent, it is this empty one (nothing ran), not
        # the previous request's, which a caller would take for what its code did.
        outcome = self.last_outcome = ExecutionOutcome(output_limit=self.output_limit)
        if subshell_id is None and self._draining is not None and not self._draining.done():
            # A cell sent before the cancelled one has stopped would be aborted (stop_on_error) when it raises.
            # ``wait`` neither raises the drain's own end nor cancels it, and lets *our* cancellation through: a
            # caller that went away meanwhile must not go on to send its code.
            await asyncio.wait([self._draining])
        msg = self._new_msg("execute_request", content, subshell_id)
        try:
            return await run_execute(
                self._link,
                msg,
                outcome,
                timeout=timeout,
                on_output=on_output,
                interrupt=interrupt,
                on_outputs=on_outputs,
            )
        except asyncio.CancelledError:
            # the caller went away (MCP notifications/cancelled, client disconnect): stop the cell, and
            # hold the next execute back until it has stopped
            self._start_draining(msg["header"]["msg_id"])
            outcome.status = "cancelled"
            outcome.message = "cancelled by the client: the kernel was interrupted, its state is kept"
            raise

    async def inspect(self, code: str, *, timeout: float, detail_level: int = 0) -> dict[str, Any]:
        """The kernel's own ``inspect_request`` for ``code`` (cursor at its end): the reply's content.
        Raises ``TimeoutError`` when no reply comes within ``timeout`` seconds."""
        if self._closed:
            raise KernelSessionError("the kernel session is closed")
        content = {"code": code, "cursor_pos": len(code), "detail_level": detail_level}
        reply = await self._request("shell", "inspect_request", content, timeout)
        return dict(reply.get("content") or {})

    def _start_draining(self, msg_id: str) -> None:
        self._draining = asyncio.ensure_future(drain(self._link, msg_id, self._receive(msg_id)))
        self._background.add(self._draining)
        self._draining.add_done_callback(self._background.discard)

    # -------------------------------------------------------------- interrupts

    async def _interrupt_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.interrupt()

    async def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT for our kernels, REST or ``interrupt_request`` otherwise)."""
        if self.kind == "started":
            await self._manager.interrupt_kernel()
        elif self._api is not None and self.kernel_id is not None:
            await self._api.interrupt(self.kernel_id)
        else:
            await self._request("control", "interrupt_request", {}, timeout=5)

    async def outlives_interrupt(self, timeout: float = INTERRUPT_SETTLE) -> bool:
        """After :meth:`interrupt`: False if the kernel died of it (xeus-python and Deno's kernel end on SIGINT),
        True once it is no longer busy, or still alive after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if not await self.is_alive():
                return False
            if self.execution_state != "busy" or time.monotonic() >= deadline:
                return True
            await asyncio.sleep(0.05)

    # -------------------------------------------------------------- subshell

    async def _get_subshell(self) -> str | None:
        """The id of our inspection subshell, created on first use; None when unsupported."""
        if not self.supports_subshells:
            return None
        async with self._subshell_lock:
            if self._subshell_id is None:
                try:
                    reply = await self._request("control", "create_subshell_request", {}, timeout=5)
                except (TimeoutError, KernelSessionError):
                    return None
                self._subshell_id = reply["content"].get("subshell_id")
            return self._subshell_id
