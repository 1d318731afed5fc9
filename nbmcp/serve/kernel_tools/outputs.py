"""Kernel outputs -> MCP results, and live output as progress notifications.

The conversion itself is :mod:`nbmcp.content` (one converter for the whole package); this module adds
what is specific to ``nbmcp serve``: the status line, the structured envelope (status, execution count,
duration, truncation, each output with the text the content shows for it, kernel), the output budget, and
:class:`ProgressPump`, which turns stream text into throttled, bounded ``notifications/progress`` while a cell
runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.types import CallToolResult, ImageContent, TextContent

from ... import content
from ...cancellation import cancel_and_wait
from ..kernel.execution import ExecutionOutcome

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
    ``omit_streams`` (stderr, when it went to the client as log messages) are left out of the content.

    The structured content carries what the text carries, for clients that show a model only that: each
    output with its text as the content has it (values, streams, tracebacks; the same budget and cut), and
    images by reference (type, size, where in the content)."""
    converted, outputs = _converted_outputs(outcome.outputs, image_max_px, omit_streams)
    converted = content.apply_budget(converted, budget, store)
    blocks, notes = _attach_text(list(converted.content), outputs)
    data = converted.structured
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "truncated"} or None
    is_error = converted.is_error or outcome.status != "ok"  # interrupted, aborted, timeout, dead, ...
    if outcome.message:
        blocks.append(TextContent(type="text", text=outcome.message))
    if outcome.cut_chars:
        blocks.append(TextContent(type="text", text=output_cut_note(outcome)))
    blocks.append(TextContent(type="text", text=status_line(outcome, kernel)))
    structured: dict[str, Any] = {
        "status": outcome.status,
        "execution_count": outcome.execution_count,
        "duration_ms": round(outcome.duration * 1000, 1),
        "truncated": converted.truncated or outcome.cut_chars > 0,
        "outputs": outputs,
        "kernel": kernel,
    }
    if notes:
        structured["notes"] = notes
    if data is not None:
        structured["data"] = data
    if outcome.error and outcome.status != "ok":
        structured["error"] = {"ename": outcome.error.get("ename"), "evalue": outcome.error.get("evalue")}
    if outcome.message:
        structured["message"] = outcome.message
    if outcome.cut_chars:
        structured["cut_chars"] = outcome.cut_chars
    return CallToolResult(content=blocks, structured_content=structured, is_error=is_error)


_OUTPUT_INDEX = "nbmcp/output"  # on a content block while it is budgeted: which output it came from


def _converted_outputs(
    outputs: list[dict[str, Any]], image_max_px: int, omit_streams: tuple[str, ...]
) -> tuple[content.Converted, list[dict[str, Any]]]:
    """The outputs as content (each block marked with the index of its output in the second value), and one
    structured entry per output (consecutive chunks of one stream are one output, as in the content)."""
    converted = content.Converted([])
    entries: list[dict[str, Any]] = []
    groups: list[list[dict[str, Any]]] = []
    for out in outputs:
        previous = groups[-1][0] if groups else None
        if (
            previous is not None
            and out.get("output_type") == "stream" == previous.get("output_type")
            and out.get("name") == previous.get("name")
        ):
            groups[-1].append(out)
        else:
            groups.append([out])
    for group in groups:
        entry = output_kinds(group[:1])[0]
        if entry["type"] == "error":
            entry["evalue"] = group[0].get("evalue")
        entries.append(entry)
        if entry["type"] == "stream" and entry["name"] in omit_streams:
            entry["text"] = None
            entry["note"] = "sent to the client as log messages"
            continue
        part = content.convert_outputs(group, image_max_px=image_max_px)
        for block in part.content:
            block.meta = {**(block.meta or {}), _OUTPUT_INDEX: len(entries) - 1}
        converted.content.extend(part.content)
        converted.is_error = converted.is_error or part.is_error
        if part.structured is not None:  # the last result's or error's, as for the whole list at once
            converted.structured = part.structured
    return converted, entries


def _attach_text(blocks: list[Any], entries: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    """Give each entry the text of its budgeted blocks (and its images by reference); return the blocks without
    their marks, and the text of blocks that belong to no output (the budget's own notes)."""
    shown: list[Any] = []
    notes: list[str] = []
    for position, block in enumerate(blocks):
        meta = dict(block.meta or {})
        index = meta.pop(_OUTPUT_INDEX, None)
        block = block.model_copy(update={"meta": meta or None})
        shown.append(block)
        if index is None:
            if isinstance(block, TextContent):
                notes.append(block.text)
            continue
        entry = entries[index]
        if isinstance(block, TextContent):
            text = block.text
            if entry["type"] == "stream" and entry.get("name") != "stdout":
                text = text.removeprefix(f"[{entry['name']}]\n")
            entry["text"] = entry.get("text", "") + text
        elif isinstance(block, ImageContent):
            entry.setdefault("images", []).append(_image_reference(block, position))
    return shown, notes


def _image_reference(block: ImageContent, position: int) -> str:
    """``image/png, 640x480, content block 3``: an image as structured content names it."""
    size = ""
    with contextlib.suppress(Exception):  # an image PIL cannot read is still named
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(block.data))) as image:
            size = f", {image.width}x{image.height}"
    return f"{block.mime_type}{size}, content block {position + 1}"


def output_cut_note(outcome: ExecutionOutcome) -> str:
    """What serve did not keep of a long output (:mod:`..kernel.bounds`): the client knows it cannot fetch it."""
    return (
        f"[nbmcp: {outcome.cut_chars:,} characters of this output were not kept: serve keeps "
        f"{outcome.output_limit:,} characters of each output, its head and tail (--record-output-limit), so they "
        "are in neither nbmcp://outputs nor the session notebook; write large output to a file instead]"
    )


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
        self._tail = (self._tail + text[-4096:])[-4096:]  # not a copy of a 100 MB chunk
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
            await cancel_and_wait(self._flush_task)
            self._flush_task = None


def _last_line(text: str) -> str:
    text = content.strip_ansi(text).rstrip("\n")
    line = text.rsplit("\n", 1)[-1]
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line.strip()
