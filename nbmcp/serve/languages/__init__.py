"""Kernel-side inspection, one adapter per kernel language, each answering with the same JSON shapes.

An adapter lists variables (``{"variables": [{"name", "type", "shape" | "len", "repr"}], "total"}``),
describes one (type, shape, kind; a frame's columns and dtypes, memory, head, row count and column profile;
a callable's signature; a mapping's keys; a value's bounded repr) and pages rows at an offset with chosen
columns (``{"columns", "rows", "offset", "total_rows", "count_capped"}``); an error is ``{"error": "..."}``.
Those are the Python probe's shapes (:mod:`nbmcp.serve.languages.probe`), so tools and content conversion do not care
which language answered. The adapter is chosen from the kernel's ``kernel_info_reply``
(``language_info.name``), not from its kernelspec name: xeus-python gets the Python adapter, IRkernel the R
one, and a language without an adapter gets honest answers (:mod:`.other`).
"""

from __future__ import annotations

from ..kernel.session import KernelSession
from .adapter import LanguageAdapter
from .other import NoAdapter
from .python import PythonAdapter
from .r import RAdapter

__all__ = ["LanguageAdapter", "adapter_for", "language_of"]


def language_of(session: KernelSession) -> str:
    """The kernel's language, as its ``kernel_info_reply`` names it (lower case; ``""`` if it names none)."""
    return str((session.kernel_info.get("language_info") or {}).get("name") or "").strip().lower()


def adapter_for(session: KernelSession) -> LanguageAdapter:
    """The inspection adapter for the kernel of ``session``."""
    language = language_of(session)
    if language in ("python", "python3", "ipython"):
        return PythonAdapter()
    if language == "r":
        return RAdapter()
    return NoAdapter(language)
