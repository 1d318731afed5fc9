"""The kernelspecs a client can choose from (``list_kernelspecs``), and whether ``restart(kernel_name=...)``
may switch the session's kernel to one of them.

A started kernel chooses among this machine's kernelspecs (jupyter_client's ``KernelSpecManager``: the
``--kernel-name`` of ``nbmcp serve`` is the default); a kernel behind a Jupyter Server among the server's.
"""

from __future__ import annotations

from typing import Any

import anyio

from ...frames import markdown_table
from ..kernel.session import KernelSession

__all__ = ["kernelspecs_of", "kernelspecs_text", "switch_refusal"]


def _local_specs() -> list[dict[str, Any]]:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = []
    for name, found in sorted(KernelSpecManager().get_all_specs().items()):
        spec = found.get("spec") or {}
        specs.append({"name": name, "language": spec.get("language", ""), "display_name": spec.get("display_name", "")})
    return specs


async def kernelspecs_of(session: KernelSession) -> list[dict[str, Any]]:
    """``[{"name", "language", "display_name"}]`` of the kernelspecs the session's kernel source offers."""
    if session.kind == "remote":
        models = await session.server_kernelspecs()
        return [
            {
                "name": name,
                "language": (model.get("spec") or {}).get("language", ""),
                "display_name": (model.get("spec") or {}).get("display_name", ""),
            }
            for name, model in sorted(models.items())
        ]
    return await anyio.to_thread.run_sync(_local_specs)


def kernelspecs_text(specs: list[dict[str, Any]], current: str) -> str:
    """``list_kernelspecs``' answer: a table, the running one marked, and how to switch."""
    rows = [{**s, "running": "yes" if s["name"] == current else ""} for s in specs]
    table = markdown_table(rows, ["name", "language", "display_name", "running"])
    return (
        f"{len(specs)} kernelspecs; this session runs {current!r}. restart(kernel_name=NAME) switches to another "
        f"(a fresh process: all variables are lost).\n\n{table}"
    )


def switch_refusal(session: KernelSession, recording: bool, specs: list[dict[str, Any]], name: str) -> str | None:
    """Why the session may not switch to the kernelspec ``name``; ``None`` when it may."""
    names = [s["name"] for s in specs]
    if name not in names:
        return f"no kernelspec {name!r} here; the kernelspecs are: {', '.join(names)} (list_kernelspecs)"
    if session.kind != "started":
        return (
            f"this kernel ({session.kind}) was not started by nbmcp, so restart() cannot replace it with another "
            "kernelspec: start one with `nbmcp serve --kernel-name NAME`"
        )
    language = str((session.language_info or {}).get("name") or "")
    wanted = next(s for s in specs if s["name"] == name)["language"]
    if recording and language and wanted.lower() != language.lower():
        return (
            f"this session records its cells in a {language} notebook, and {name!r} runs {wanted}: the notebook "
            f"would not re-run. Start a session for it with `nbmcp serve --kernel-name {name}` (or serve with "
            "--no-record to switch languages freely)"
        )
    return None
