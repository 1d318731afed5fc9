"""The R adapter: ``probe.R`` in the kernel (IRkernel, or any kernel whose language is R).

The probe's text is sent once per kernel (again only if the kernel lost it, or nbmcp's copy changed: the
installed probe carries a digest of its text) and kept in ``options(nbmcp.probe =)``; each question is then
one short silent execute calling it with its arguments as JSON.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from ..kernel.session import KernelSession
from .adapter import LanguageAdapter
from .transport import ask

__all__ = ["RAdapter", "r_probe_source", "r_string"]


@cache
def r_probe_source() -> str:
    """The text of ``probe.R``, as sent to the kernel."""
    return (Path(__file__).parent / "probe.R").read_text(encoding="utf-8")


@cache
def _digest() -> str:
    return hashlib.sha256(r_probe_source().encode()).hexdigest()[:16]


def r_string(text: str) -> str:
    """``text`` as an R string literal. JSON's escapes are R's, as long as non-ASCII characters stay as they
    are (R has no surrogate pairs for ``\\ud83d\\ude00``)."""
    return json.dumps(text, ensure_ascii=False)


def _call_code(op: str, args: dict[str, Any]) -> str:
    # local(): nothing is assigned in the user's global environment; base:: : no user variable masks these
    return (
        "base::local({.nbmcp <- base::getOption('nbmcp.probe'); "
        f"if (base::is.environment(.nbmcp) && base::identical(.nbmcp$digest, {r_string(_digest())})) "
        f".nbmcp$answer({r_string(op)}, {r_string(json.dumps(args))})}})"
    )


def _install_code() -> str:
    return (
        "base::local({\n"
        + r_probe_source()
        + f"\ndigest <- {r_string(_digest())}\nbase::options(nbmcp.probe = base::environment())\n"
        + "}, envir = base::new.env(parent = base::baseenv()))"
    )


async def _ask(session: KernelSession, op: str, args: dict[str, Any]) -> dict[str, Any]:
    code = _call_code(op, args)
    return await ask(session, code, _install_code() + "\n" + code, language="R")


class RAdapter(LanguageAdapter):
    language = "R"

    async def list_variables(self, session: KernelSession, limit: int) -> dict[str, Any]:
        return await _ask(session, "list_variables", {"limit": int(limit)})

    async def inspect_variable(self, session: KernelSession, name: str, max_chars: int) -> dict[str, Any]:
        return await _ask(session, "inspect_variable", {"name": name, "max_chars": int(max_chars)})

    async def read_rows(
        self, session: KernelSession, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> dict[str, Any]:
        args = {"name": name, "offset": int(offset), "limit": int(limit), "columns": list(columns or [])}
        return await _ask(session, "read_rows", args)

    def cannot(self, tool: str, session: KernelSession) -> str | None:
        if tool == "query":
            return (
                "query runs read-only DuckDB SQL over a Python kernel's DataFrames; this kernel runs R, which has "
                "no such engine here (no duckdb package for R), and copying R frames into another database "
                "would read them whole. Instead: read_rows pages a data.frame, tibble, data.table or dbplyr "
                "table (the database does the LIMIT/OFFSET), inspect_variable profiles its columns, and execute "
                "runs dplyr or data.table code for anything else (dbplyr translates it to the database's SQL)."
            )
        return None
