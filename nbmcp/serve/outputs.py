"""Kernel outputs -> MCP results, and live output as progress notifications.

The conversion itself is :mod:`nbmcp.content` (one converter for the whole package); this module adds
what is specific to ``nbmcp serve``: the status line, the structured envelope (status, execution count,
duration, truncation, output kinds, kernel), the output budget, and :class:`ProgressPump`, which turns
stream text into throttled, bounded ``notifications/progress`` while a cell runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.types import CallToolResult, TextContent

from .. import content
from .execution import ExecutionOutcome

__all__ = ["ProgressPump", "error_result", "outcome_result", "output_kinds", "text_result"]

_NOTES = {
    "timeout": "timed out",
    "cancelled": "cancelled",
    "dead": "kernel died",
    "aborted": "aborted (an earlier cell failed)",
}


def output_kinds(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A compact description of each output: type plus stream name / mime types / error name."""
    kinds: list[dict[str, Any]] = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            kinds.append({"type": "stream", "name": out.get("name")})
        elif kind == "error":
            kinds.append({"type": "error", "ename": out.get("ename")})
        else:
            kinds.append({"type": kind, "mime_types": sorted((out.get("data") or {}).keys())})
    return kinds


def outcome_result(
    outcome: ExecutionOutcome,
    *,
    kernel: dict[str, Any],
    budget: int = content.DEFAULT_OUTPUT_BUDGET,
    store: content.OutputStore | None = None,
    image_max_px: int = content.DEFAULT_IMAGE_MAX_PX,
    omit_streams: tuple[str, ...] = (),
) -> CallToolResult:
    """One ``execute`` as a tool result: outputs in order (stream text, results, images, errors),
    budget applied, then a status line; structured content for programmatic clients. Streams named in
    ``omit_streams`` (stderr, when it went to the client as log messages) are left out of the content."""
    shown = [o for o in outcome.outputs if not (o.get("output_type") == "stream" and o.get("name") in omit_streams)]
    converted = content.convert_outputs(shown, image_max_px=image_max_px)
    converted = content.apply_budget(converted, budget, store)
    data = converted.structured
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "truncated"} or None
    is_error = converted.is_error or outcome.status in ("error", "timeout", "dead", "aborted", "cancelled")
    blocks = list(converted.content)
    if outcome.message:
        blocks.append(TextContent(type="text", text=outcome.message))
    blocks.append(TextContent(type="text", text=status_line(outcome, kernel)))
    structured: dict[str, Any] = {
        "status": outcome.status,
        "execution_count": outcome.execution_count,
        "duration_ms": round(outcome.duration * 1000, 1),
        "truncated": converted.truncated,
        "outputs": output_kinds(outcome.outputs),
        "kernel": kernel,
    }
    if data is not None:
        structured["data"] = data
    if outcome.error and outcome.status != "ok":
        structured["error"] = {"ename": outcome.error.get("ename"), "evalue": outcome.error.get("evalue")}
    if outcome.message:
        structured["message"] = outcome.message
    return CallToolResult(content=blocks, structured_content=structured, is_error=is_error)


def status_line(outcome: ExecutionOutcome, kernel: dict[str, Any]) -> str:
    """``[ok · In [3] · 7 ms · kernel python3 4f1c2a9e (started)]`` -- which kernel, which cell."""
    parts = [_NOTES.get(outcome.status, outcome.status)]
    if outcome.execution_count is not None:
        parts.append(f"In [{outcome.execution_count}]")
    ms = outcome.duration * 1000
    parts.append(f"{ms:.0f} ms" if ms < 10_000 else f"{outcome.duration:.1f} s")
    parts.append(kernel_label(kernel))
    return "[" + " · ".join(parts) + "]"


def kernel_label(kernel: dict[str, Any]) -> str:
    kid = str(kernel.get("id") or "?")
    return f"kernel {kernel.get('name', '?')} {kid[:8]} ({kernel.get('mode', '?')})"


def text_result(text: str, structured: dict[str, Any] | None = None, *, is_error: bool = False) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured, is_error=is_error
    )


def error_result(message: str, kernel: dict[str, Any] | None = None) -> CallToolResult:
    structured: dict[str, Any] = {"status": "error", "message": message}
    if kernel is not None:
        structured["kernel"] = kernel
    return text_result(message, structured, is_error=True)


Report = Callable[[float, float | None, str | None], Awaitable[None]]


class ProgressPump:
    """Stream text -> ``notifications/progress`` while a cell runs.

    At most one notification per ``interval`` seconds, each carrying the latest line (``\\r`` progress
    bars such as tqdm keep only their last state), at most ``max_chars`` characters: a live sign of
    life, not a second copy of the output (the full output comes once, in the result).
    """

    def __init__(self, report: Report, *, interval: float = 0.1, max_chars: int = 400) -> None:
        self._report = report
        self.interval = interval
        self.max_chars = max_chars
        self._last_sent = 0.0
        self._pending: str | None = None
        self._count = 0
        self._chunks = 0
        self._flush_task: asyncio.Task[None] | None = None
        self._tail = ""
        self.sent = 0

    async def on_output(self, name: str, text: str) -> None:
        self._chunks += 1
        self._tail = (self._tail + text)[-4096:]
        line = _last_line(self._tail)
        if not line:
            return
        self._pending = (f"[{name}] " if name != "stdout" else "") + line[-self.max_chars :]
        now = time.monotonic()
        if now - self._last_sent >= self.interval:
            await self._send()
        elif self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_later(self.interval - (now - self._last_sent)))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        await self._send()

    async def _send(self) -> None:
        message, self._pending = self._pending, None
        if message is None:
            return
        self._last_sent = time.monotonic()
        self._count += 1
        self.sent += 1
        with contextlib.suppress(Exception):  # a client that went away must not fail the execution
            await self._report(float(self._chunks), None, message)

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(BaseException):
                await self._flush_task
            self._flush_task = None


def _last_line(text: str) -> str:
    text = content.strip_ansi(text).rstrip("\n")
    line = text.rsplit("\n", 1)[-1]
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line.strip()
