"""The Python adapter: :mod:`nbmcp.serve.languages.probe` in the kernel (ipykernel, xeus-python, any Python kernel).

The probe and the answer channel (:mod:`.wire`) are installed on first use as the modules ``_nbmcp_probe``
and ``_nbmcp_wire`` (their sources, read from their files, are sent to the kernel). Other kernel-side
modules (the SQL engine of ``query``) are installed and called the same way through :func:`run_module`.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from ...frames import kinds
from ..kernel.session import KernelSession
from .adapter import LanguageAdapter
from .transport import INSPECT_TIMEOUT, ask

__all__ = ["PythonAdapter", "probe_source", "run_module", "wire_source"]

PROBE_MODULE = "_nbmcp_probe"
WIRE_MODULE = "_nbmcp_wire"

_INSTALL = (
    "(lambda m: (__import__('sys').modules.__setitem__({module!r}, m), exec({src!r}, m.__dict__)))"
    "(__import__('types').ModuleType({module!r}))"
)
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(")


@cache
def probe_source() -> str:
    """The source of :mod:`nbmcp.serve.languages.probe`, as sent to the kernel, with the table of backends it needs
    where nbmcp is missing (:mod:`nbmcp.frames.kinds`)."""
    table = Path(kinds.__file__).read_text(encoding="utf-8")
    return (Path(__file__).parent / "probe.py").read_text(encoding="utf-8") + f"\n_use_kinds({table!r})\n"


@cache
def wire_source() -> str:
    """The source of :mod:`.wire`, as sent to the kernel."""
    return (Path(__file__).parent / "wire.py").read_text(encoding="utf-8")


def _call_code(module: str, call: str) -> str:
    match = _CALL.match(call)
    if match is None:
        raise ValueError(f"not a call of a module function: {call!r}")
    return (
        f"{WIRE_MODULE!r} in __import__('sys').modules and "
        f"__import__({WIRE_MODULE!r}).answer({module!r}, {match.group(1)!r}, lambda m: m.{call})"
    )


async def run_module(
    session: KernelSession,
    call: str,
    *,
    timeout: float = INSPECT_TIMEOUT,
    module: str = PROBE_MODULE,
    source: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``<module>.<call>`` (JSON text) in the Python kernel, installing the module and the answer
    channel first if the kernel does not have them yet; the answer as a dict."""
    code = _call_code(module, call)
    install = "\n".join(
        [
            _INSTALL.format(module=WIRE_MODULE, src=wire_source()),
            _INSTALL.format(module=module, src=source if source is not None else probe_source()),
            code,
        ]
    )
    return await ask(session, code, install, timeout=timeout, language="Python")


class PythonAdapter(LanguageAdapter):
    language = "Python"

    async def list_variables(self, session: KernelSession, limit: int) -> dict[str, Any]:
        return await run_module(session, f"list_variables({int(limit)})")

    async def inspect_variable(self, session: KernelSession, name: str, max_chars: int) -> dict[str, Any]:
        return await run_module(session, f"inspect_variable({name!r}, {int(max_chars)})")

    async def read_rows(
        self, session: KernelSession, name: str, offset: int, limit: int, columns: list[str] | None
    ) -> dict[str, Any]:
        cols = [str(c) for c in columns] if columns else None
        return await run_module(session, f"read_rows({name!r}, {int(offset)}, {int(limit)}, {cols!r})")
