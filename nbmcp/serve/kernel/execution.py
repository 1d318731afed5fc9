"""One ``execute_request`` from send to outcome: outputs collected as a notebook would, the timeout
(interrupt, then a bounded grace), death while waiting, and draining a cell whose caller went away.

The kernel is reached through a :class:`KernelLink` (the session's routing and control), so this module
knows the messaging protocol of one execution and nothing about transports or kernel lifecycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .bounds import DEFAULT_OUTPUT_LIMIT, StreamText, bound_output
from .channels import Inbox

__all__ = [
    "ExecutionOutcome",
    "KernelLink",
    "OutputCallback",
    "OutputCollector",
    "OutputsCallback",
    "drain",
    "imports_ready",
    "run_execute",
    "warm_imports",
]

Status = Literal["ok", "error", "interrupted", "aborted", "timeout", "cancelled", "dead"]
OutputCallback = Callable[[str, str], Awaitable[None] | None]
#: Sees the whole output list after each iopub message that changed it (rich outputs too, not only stream text).
OutputsCallback = Callable[[list[dict[str, Any]]], Awaitable[None] | None]

LIVENESS_INTERVAL = 0.25  # seconds between liveness checks while waiting for a busy kernel
INTERRUPT_GRACE = 5.0  # seconds to wait for the kernel to go idle after an interrupt
DRAIN_INTERRUPTS = 3  # a cancelled cell is interrupted up to this many times, INTERRUPT_GRACE apart
IDLE_GRACE = 2.0  # seconds of iopub silence after the reply before giving up on the 'idle' status


@dataclass
class ExecutionOutcome:
    """What one ``execute_request`` produced.

    ``outputs`` are nbformat v4 output dicts (``nbformat.v4.output_from_msg``), in the order the kernel
    sent them, with ``clear_output`` and ``update_display_data`` applied as a notebook would.
    ``status`` is ``ok`` | ``error`` | ``interrupted`` (stopped by an interrupt while it ran: IRkernel's
    ``abort`` reply; ipykernel reports a KeyboardInterrupt error instead) | ``aborted`` (never run: an
    earlier cell failed) | ``timeout`` (interrupted at the deadline; outputs are partial) | ``cancelled``
    (the caller went away; the kernel was interrupted) | ``dead`` (the kernel died while running the code).
    """

    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    status: Status = "ok"
    duration: float = 0.0
    timed_out: bool = False
    message: str | None = None
    error: dict[str, Any] | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)
    #: Characters kept of each stream output (its head and tail, :mod:`.bounds`); how many were cut in all.
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    cut_chars: int = 0


@dataclass
class KernelLink:
    """What an execution needs from the session that runs it."""

    send: Callable[[str, dict[str, Any]], Inbox]  # send on a channel; the inbox of the replies
    forget: Callable[[str], None]  # stop routing replies to a message id
    is_alive: Callable[[], Awaitable[bool]]
    interrupt: Callable[[], Awaitable[None]]  # never raises
    mark_dead: Callable[[ExecutionOutcome], None]  # the kernel died: record it, say so in the outcome


# --------------------------------------------------------------------------------------------------
# nbformat, imported early
# --------------------------------------------------------------------------------------------------

_warming: threading.Thread | None = None


def warm_imports() -> None:
    """Import nbformat on a thread while the kernel boots: its import (jsonschema) takes from 0.2 s to
    over a second, and would otherwise stall the event loop at the first output."""
    global _warming
    if _warming is not None or "nbformat.v4" in sys.modules:
        return

    def load() -> None:
        with contextlib.suppress(Exception):
            import nbformat.v4  # noqa: F401

    _warming = threading.Thread(target=load, name="nbmcp-warm-imports", daemon=True)
    _warming.start()


async def imports_ready() -> None:
    """Wait (off the event loop) for :func:`warm_imports`, so no execution stalls on it later."""
    if _warming is not None and _warming.is_alive():
        await asyncio.to_thread(_warming.join)


# --------------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------------


class OutputCollector:
    """Turns iopub messages into notebook outputs, as a notebook frontend would, one message at a time.

    Not nbclient's ``NotebookClient.output``: that needs a notebook and a cell index (display ids are
    updated across the notebook's cells, ``clear_output(wait=True)`` is state of the client) and merges
    consecutive streams only when the cell ends; an assistant wants each stream's text as it arrives.
    """

    def __init__(self, outcome: ExecutionOutcome) -> None:
        self.outcome = outcome
        self.display_ids: dict[str, list[int]] = {}
        self.clear_pending = False
        self.execution_count: int | None = None
        self.streams: dict[int, StreamText] = {}  # stream outputs by index: kept to their head and tail
        self.started = False  # the kernel announced this cell's code (execute_input): it began running it

    def add(self, msg: dict[str, Any]) -> str | None:
        """Record one iopub message; returns stream text (for live progress) if it was a stream."""
        msg_type = msg["header"].get("msg_type")
        content = msg["content"]
        if msg_type == "execute_input":
            self.started = True
            self.execution_count = content.get("execution_count")
        elif msg_type == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()
        elif msg_type == "update_display_data":
            self._update_display(content)
        elif msg_type in ("stream", "display_data", "execute_result", "error"):
            return self._append(msg)
        return None

    def _clear(self) -> None:
        self.outcome.outputs.clear()
        self.display_ids.clear()
        self.streams.clear()
        self.outcome.cut_chars = 0  # what was cut from cleared outputs is not missing from what is shown
        self.clear_pending = False

    def _update_display(self, content: dict[str, Any]) -> None:
        outputs = self.outcome.outputs
        display_id = (content.get("transient") or {}).get("display_id")
        for index in self.display_ids.get(display_id or "", []):
            if index < len(outputs):
                update = {"output_type": "display_data", "data": content.get("data", {})}
                outputs[index]["data"] = bound_output(update, self.outcome.output_limit, keep_binary=True)[0]["data"]
                outputs[index]["metadata"] = content.get("metadata", {})

    def _append(self, msg: dict[str, Any]) -> str | None:
        msg_type = msg["header"].get("msg_type")
        content = msg["content"]
        outputs = self.outcome.outputs
        if self.clear_pending:
            self._clear()
        if msg_type == "stream" and outputs and outputs[-1].get("output_type") == "stream":
            last = outputs[-1]
            if last.get("name") == content.get("name"):
                self._add_stream_text(len(outputs) - 1, content.get("text", ""))
                return content.get("text", "")
        from nbformat.v4 import output_from_msg  # here: nbformat's import is slow, start-up matters

        output = output_from_msg(msg)
        if msg_type != "stream":  # a 30 MB repr or traceback is kept to its head and tail too (images stay whole)
            output, cut = bound_output(output, self.outcome.output_limit, keep_binary=True)
            self.outcome.cut_chars += cut
        if msg_type == "error":
            self.outcome.error = {k: output.get(k) for k in ("ename", "evalue", "traceback")}
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self.display_ids.setdefault(display_id, []).append(len(outputs))
        outputs.append(output)
        if msg_type == "stream":
            self.streams[len(outputs) - 1] = StreamText(self.outcome.output_limit)
            self._add_stream_text(len(outputs) - 1, content.get("text", ""))
        return content.get("text", "") if msg_type == "stream" else None

    def _add_stream_text(self, index: int, text: str) -> None:
        """Append to a stream output, keeping its head and tail only: a cell printing 100 MB costs O(limit)."""
        kept = self.streams[index]
        cut = kept.cut
        kept.add(text)
        self.outcome.cut_chars += kept.cut - cut
        self.outcome.outputs[index]["text"] = kept.text()


# --------------------------------------------------------------------------------------------------
# waiting for one execute_request
# --------------------------------------------------------------------------------------------------


async def run_execute(
    link: KernelLink,
    msg: dict[str, Any],
    outcome: ExecutionOutcome,
    *,
    timeout: float | None,
    on_output: OutputCallback | None,
    interrupt: bool,
    on_outputs: OutputsCallback | None = None,
) -> ExecutionOutcome:
    """Send the ``execute_request`` ``msg`` and fill ``outcome`` until the kernel has replied and is idle.

    At ``timeout`` the kernel is interrupted (``interrupt=False``: we only stop waiting) -- but only once it
    has started on this request: before that it is running someone else's cell (the human's, in an
    attached kernel), which is not ours to stop.
    """
    return await _Execution(link, outcome, timeout, on_output, interrupt, on_outputs).run(msg)


#: The iopub messages that may change a cell's outputs (what :class:`OutputCollector` acts on).
_OUTPUT_CHANGES = frozenset(
    {"stream", "display_data", "execute_result", "error", "update_display_data", "clear_output"}
)


class _Execution:
    """The state of one request while we wait for it."""

    def __init__(
        self,
        link: KernelLink,
        outcome: ExecutionOutcome,
        timeout: float | None,
        on_output: OutputCallback | None,
        interrupt: bool,
        on_outputs: OutputsCallback | None = None,
    ) -> None:
        self.link = link
        self.on_outputs = on_outputs
        self.outcome = outcome
        self.timeout = timeout
        self.on_output = on_output
        self.interrupt = interrupt
        self.collector = OutputCollector(outcome)
        self.started = self.last_heard = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.got_reply = self.got_idle = False
        self.running = False  # the kernel has started on this request (not still finishing another cell)
        self.interrupted_at: float | None = None

    async def run(self, msg: dict[str, Any]) -> ExecutionOutcome:
        msg_id = msg["header"]["msg_id"]
        inbox = self.link.send("shell", msg)
        try:
            while not (self.got_reply and self.got_idle):
                wait = await self._next_wait()
                if wait is None:
                    break
                try:
                    channel, reply = await inbox.get(wait)
                except asyncio.TimeoutError:
                    if not await self.link.is_alive():
                        self.link.mark_dead(self.outcome)
                        break
                    continue
                if not await self._handle(channel, reply):
                    break
        finally:
            self.link.forget(msg_id)
            self.outcome.duration = time.monotonic() - self.started
        return self._finish()

    async def _next_wait(self) -> float | None:
        """Seconds to wait for the next message; None: stop waiting (the outcome says why)."""
        while True:
            now = time.monotonic()
            if self.got_reply and now - self.last_heard > IDLE_GRACE:
                return None  # replied, but no 'idle' on iopub (a kernel that never sends it): don't hang
            if self.interrupted_at is None and self.deadline is not None:
                if now < self.deadline:
                    return min(LIVENESS_INTERVAL, self.deadline - now)
                if not self._may_interrupt_at_deadline(now):
                    return None
                await self.link.interrupt()
                continue
            if self.interrupted_at is not None and now - self.interrupted_at > INTERRUPT_GRACE:
                self._timeout(
                    f"timed out after {self.timeout:g} s; the kernel did not stop within "
                    f"{INTERRUPT_GRACE:g} s of the interrupt (it may still be busy: interrupt() or restart())"
                )
                return None
            return LIVENESS_INTERVAL

    def _may_interrupt_at_deadline(self, now: float) -> bool:
        """The deadline passed: whether to interrupt the kernel (else the outcome says why not)."""
        self.interrupted_at = now
        self.outcome.timed_out = True
        if not self.interrupt:
            self._timeout(f"no answer within {self.timeout:g} s (the kernel was not interrupted)")
            return False
        if not self.running:
            # Ours is still queued behind that cell and runs after it.
            self._timeout(
                f"the kernel was busy with another cell for all {self.timeout:g} s, so it was not "
                "interrupted; this code is queued and runs when that cell ends "
                "(interrupt() stops the running cell)"
            )
            return False
        return True

    def _timeout(self, message: str) -> None:
        self.outcome.status = "timeout"
        self.outcome.message = message

    async def _handle(self, channel: str, msg: dict[str, Any]) -> bool:
        """Take one message of this request; False: stop waiting."""
        self.last_heard = time.monotonic()
        msg_type = msg["header"].get("msg_type")
        if channel == "shell" and msg_type == "execute_reply":
            self._on_reply(msg["content"])
        elif channel == "iopub" and msg_type == "status":
            return self._on_status(msg["content"].get("execution_state"))
        elif channel == "iopub":
            text = self.collector.add(msg)
            if text is not None and self.on_output is not None:
                pending = self.on_output(msg["content"].get("name", "stdout"), text)
                if pending is not None:
                    await pending
            if self.on_outputs is not None and msg_type in _OUTPUT_CHANGES:
                pending = self.on_outputs(self.outcome.outputs)
                if pending is not None:
                    await pending
        return True

    def _on_reply(self, content: dict[str, Any]) -> None:
        self.got_reply = True
        self.outcome.execution_count = content.get("execution_count")
        self.outcome.user_expressions = content.get("user_expressions") or {}
        status = content.get("status")
        if status == "error":
            self.outcome.status = "error"
            self.outcome.error = {k: content.get(k) for k in ("ename", "evalue", "traceback")}
        elif status in ("abort", "aborted"):
            # "aborted" (the spec; "abort" in its 4.x wording) is a request the kernel never ran. IRkernel
            # answers "abort" for a cell it stopped at an interrupt: it had announced that cell's code.
            if self.collector.started:
                self.outcome.status = "interrupted"
                self.outcome.message = "interrupted: the kernel stopped the cell; its state is kept"
            else:
                self.outcome.status = "aborted"
        elif status not in ("ok", None):
            self.outcome.status = "error"
            self.outcome.message = f"the kernel answered with the unknown status {status!r}"

    def _on_status(self, state: str | None) -> bool:
        if state == "busy":
            self.running = True
        elif state == "idle":
            self.got_idle = True
        elif state in ("restarting", "dead"):
            self.link.mark_dead(self.outcome)
            return False
        return True

    def _finish(self) -> ExecutionOutcome:
        outcome = self.outcome
        if outcome.timed_out and outcome.status != "dead":
            outcome.status = "timeout"
            if outcome.message is None:
                outcome.message = f"timed out after {self.timeout:g} s: the kernel was interrupted, its state is kept"
        if outcome.execution_count is None:
            outcome.execution_count = self.collector.execution_count
        return outcome


async def drain(link: KernelLink, msg_id: str, inbox: Inbox) -> None:
    """Interrupt the cell ``msg_id`` and wait (bounded) until the kernel is done with it; ``inbox``
    receives that cell's messages.

    Done means its ``execute_reply`` *and* its ``idle`` status: after an error (the KeyboardInterrupt) ipykernel
    aborts every request that reaches it before the end of its abort window, which it schedules after sending the
    reply but before publishing ``idle``. A request sent on the reply alone was sometimes aborted unrun.
    """
    try:
        await link.interrupt()
        started = time.monotonic()
        deadline = started + INTERRUPT_GRACE * DRAIN_INTERRUPTS
        next_interrupt = started + INTERRUPT_GRACE
        replied = idle = False
        while not (replied and idle) and (remaining := deadline - time.monotonic()) > 0:
            if not replied and time.monotonic() >= next_interrupt:
                # The cell still runs: the interrupt was lost (a SIGINT that reached the kernel while it ignored
                # SIGINT, e.g. on a starved machine). The next execute waits for this drain, so send another.
                await link.interrupt()
                next_interrupt += INTERRUPT_GRACE
            try:
                channel, msg = await inbox.get(min(remaining, LIVENESS_INTERVAL))
            except asyncio.TimeoutError:
                if not await link.is_alive():
                    return
                continue
            kind = msg["header"].get("msg_type")
            if channel == "shell" and kind == "execute_reply":
                replied = True
            elif channel == "iopub" and kind == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
    except Exception:
        pass
    finally:
        link.forget(msg_id)
