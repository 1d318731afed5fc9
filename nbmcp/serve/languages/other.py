"""A kernel language without an inspection adapter (Deno's TypeScript, Julia, Bash, ...): honest answers.

Execution, outputs, interrupt and restart are the Jupyter protocol and work for every kernel; listing
variables and paging rows need code that runs in the kernel's language, which nbmcp has for Python and R
only. ``inspect_variable`` asks the kernel's own ``inspect_request`` (what a notebook shows on Shift-Tab),
where the kernel implements it.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from ..kernel.session import KernelSession
from ..kernel_tools.outputs import kernel_label
from .adapter import LanguageAdapter
from .transport import INSPECT_TIMEOUT

__all__ = ["NoAdapter"]

SUPPORTED = "Python (ipykernel, xeus-python, any Python kernel) and R (IRkernel)"


class NoAdapter(LanguageAdapter):
    def __init__(self, language: str) -> None:
        self.language = language or "an unnamed language"

    def _what_works(self, session: KernelSession) -> str:
        return (
            f"{kernel_label(session.describe())} runs {self.language}, and nbmcp inspects {SUPPORTED} kernels. "
            "What works here: execute (run code that prints what you need, e.g. the variable itself), interrupt, "
            "restart, and inspect_variable through the kernel's own inspector where it has one."
        )

    def cannot(self, tool: str, session: KernelSession) -> str | None:
        if tool == "inspect_variable":
            return None  # the kernel's own inspect_request
        return f"{tool} is not available for this kernel: {self._what_works(session)}"

    async def list_variables(self, session: KernelSession, limit: int) -> dict[str, Any]:
        raise ToolError(self.cannot("list_variables", session) or "")

    async def read_rows(
        self, session: KernelSession, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> dict[str, Any]:
        raise ToolError(self.cannot("read_rows", session) or "")

    async def inspect_variable(self, session: KernelSession, name: str, max_chars: int) -> dict[str, Any]:
        """The kernel's ``inspect_request`` for ``name``, as a value description (``kind`` ``"value"``)."""
        try:
            reply = await session.inspect(name, timeout=INSPECT_TIMEOUT)
        except TimeoutError as exc:
            raise ToolError(
                f"the kernel's own inspector did not answer within {INSPECT_TIMEOUT:g} s (busy, or it does not "
                f"implement inspect_request). {self._what_works(session)}"
            ) from exc
        if reply.get("status") != "ok":
            raise ToolError(
                f"the kernel's own inspector failed ({reply.get('ename') or reply.get('status')}: "
                f"{reply.get('evalue') or ''}). {self._what_works(session)}"
            )
        data = reply.get("data") or {}
        text = data.get("text/plain") or data.get("text/markdown") or ""
        if not reply.get("found") or not text:
            return {
                "error": f"the {self.language} kernel's own inspector (inspect_request) has nothing for {name!r}: "
                "the name may not exist, or the kernel may not implement inspection. nbmcp has no "
                f"{self.language} adapter to list what exists; execute code that shows it (the name alone, "
                "as a cell, displays its value)"
            }
        from ...content import strip_ansi

        text = strip_ansi(str(text))
        cut = text[:max_chars] + ("..." if len(text) > max_chars else "")
        return {
            "name": name,
            "type": "?",
            "kind": "value",
            "repr": cut,
            "note": f"from the {self.language} kernel's own inspector (inspect_request); nbmcp has no "
            f"{self.language} adapter for types, shapes or pages",
        }
