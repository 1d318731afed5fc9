"""Asking a kernel a question: a silent execute of nbmcp's code, whose JSON answer comes back as a
``display_data`` of :data:`ANSWER_MIME` (or stdout between markers), the same way for every language.

The request runs through a kernel subshell when the kernel has them, so it answers while a cell runs.
Without subshells (IRkernel, ipykernel < 7) it queues behind the running cell, bounded and never
interrupting it, and the answer says it waited. The execute is silent, ``store_history=False`` and not
recorded (only tool executes are), so nothing of it reaches a notebook or the session notebook.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from ...exceptions import KernelDeadError
from ..kernel.session import ExecutionOutcome, KernelSession
from ..kernel_tools.outputs import kernel_label
from .wire import END, MIME, START

__all__ = ["ANSWER_MIME", "INSPECT_TIMEOUT", "answer_of", "ask"]

ANSWER_MIME = MIME
INSPECT_TIMEOUT = 15.0
_MISSING = "nbmcp_missing"
# which kernels of a language answer only between cells (no subshells)
_WITHOUT_SUBSHELLS = {"Python": "ipykernel < 7", "R": "IRkernel"}


def answer_of(outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer among an execute's outputs: the last ``display_data`` of :data:`ANSWER_MIME`, else the last
    marked stdout text; ``None`` if there is none or it says the kernel-side code is not installed."""
    text: Any = None
    for out in reversed(outputs):
        if out.get("output_type") == "display_data" and ANSWER_MIME in (out.get("data") or {}):
            text = out["data"][ANSWER_MIME]
            break
    if text is None:
        stdout = "".join(
            "".join(o["text"]) if isinstance(o.get("text"), list) else str(o.get("text", ""))
            for o in outputs
            if o.get("output_type") == "stream" and o.get("name") == "stdout"
        )
        end = stdout.rfind(END)
        start = stdout.rfind(START, 0, end) if end >= 0 else -1
        if start < 0:
            return None
        text = stdout[start + len(START) : end]
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:  # e.g. a stdout answer cut to the session's output limit (--output-limit)
        raise ToolError(f"the kernel's inspection answer is not JSON ({exc}); ask for less (a smaller limit)") from exc
    if not isinstance(data, dict):
        raise ToolError(f"the kernel's inspection answered {type(data).__name__}, not a JSON object")
    return None if _MISSING in data else data


async def ask(
    session: KernelSession,
    code: str,
    install: str,
    *,
    timeout: float = INSPECT_TIMEOUT,
    language: str = "the kernel's language",
) -> dict[str, Any]:
    """Run ``code`` (which answers, once nbmcp's kernel-side code is installed); if it does not answer, run
    ``install`` (which installs that code, then answers). The answer as a dict."""
    subshell = session.supports_subshells
    # No subshell to answer from while a cell runs: the request waits in the kernel's queue until the cell is
    # done, and a timeout must not interrupt that cell (it is not ours to stop).
    queued = not subshell and session.busy
    started = time.monotonic()
    outcome: ExecutionOutcome | None = None
    for attempt in (code, install):
        try:
            outcome = await session.execute(
                attempt,
                silent=True,
                store_history=False,
                timeout=timeout,
                subshell=subshell,
                lock=False,
                interrupt=not queued,
            )
        except KernelDeadError as exc:
            raise ToolError(str(exc)) from exc
        _check(session, outcome, timeout, queued, language)
        data = answer_of(outcome.outputs)
        if data is not None:
            if queued:
                data["note"] = (
                    f"note: the kernel has no subshells ({_WITHOUT_SUBSHELLS.get(language, language)}), so this "
                    f"inspection waited {time.monotonic() - started:.1f} s for the running cell to finish"
                )
            return data
    assert outcome is not None
    if outcome.error:
        raise ToolError(f"inspection failed: {outcome.error.get('ename')}: {outcome.error.get('evalue')}")
    raise ToolError(
        f"{kernel_label(session.describe())} ran nbmcp's {language} inspection code but sent no answer back "
        f"(status {outcome.status!r}); execute() still works, and code you run there can print what you need"
    )


def _check(session: KernelSession, outcome: ExecutionOutcome, timeout: float, queued: bool, language: str) -> None:
    """Raise the tool error an execute that did not complete says."""
    if outcome.status == "timeout" and queued:
        raise ToolError(
            f"{kernel_label(session.describe())} was busy running a cell for {timeout:g} s and has no subshells "
            f"({_WITHOUT_SUBSHELLS.get(language, language)}) to inspect it meanwhile; wait for the cell, or "
            "interrupt() it"
        )
    if outcome.status == "timeout":
        raise ToolError(f"the kernel did not answer the inspection within {timeout:g} s (busy?)")
    if outcome.status == "dead":
        raise ToolError(outcome.message or session.dead_message())
    if outcome.status in ("interrupted", "aborted", "cancelled"):
        raise ToolError(
            f"the inspection was {outcome.status} by the kernel before it answered (an interrupt, or an "
            "error in a cell queued before it); ask again"
        )
