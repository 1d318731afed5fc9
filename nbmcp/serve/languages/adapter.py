"""The interface every language adapter implements (see the package's docstring for the JSON shapes)."""

from __future__ import annotations

from typing import Any

from ..kernel.session import KernelSession

__all__ = ["LanguageAdapter"]


class LanguageAdapter:
    """What inspecting a kernel of one language takes. Each method returns the probe's JSON as a dict."""

    #: the language as users name it ("Python", "R")
    language: str = ""

    async def list_variables(self, session: KernelSession, limit: int) -> dict[str, Any]:
        raise NotImplementedError

    async def inspect_variable(self, session: KernelSession, name: str, max_chars: int) -> dict[str, Any]:
        raise NotImplementedError

    async def read_rows(
        self, session: KernelSession, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> dict[str, Any]:
        raise NotImplementedError

    def cannot(self, tool: str, session: KernelSession) -> str | None:
        """Why ``tool`` does not work for this language, and what works instead; ``None`` when it works."""
        return None
