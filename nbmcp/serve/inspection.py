"""Inspecting a kernel's variables: run :mod:`.probe` there and turn its JSON answers into text.

The probe is installed on first use as the module ``_nbmcp_probe`` (its source, read from its file, is
sent to the kernel), and runs through a kernel subshell when the kernel has them, so it answers while a
cell runs. Without subshells (ipykernel < 7, e.g. on Enterprise Gateway images) it queues behind the
running cell, bounded and never interrupting it, and the answer says it waited.
"""

from __future__ import annotations

import ast
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from ..exceptions import KernelDeadError
from ..frames import markdown_table
from .outputs import kernel_label
from .session import KernelSession

__all__ = ["INSPECT_TIMEOUT", "describe_text", "probe_source", "rows_text", "run_probe", "variables_text"]

INSPECT_TIMEOUT = 15.0

_INSTALL = (
    "(lambda m: (__import__('sys').modules.__setitem__({module!r}, m), exec({src!r}, m.__dict__)))"
    "(__import__('types').ModuleType({module!r}));"
)


@cache
def probe_source() -> str:
    """The source of :mod:`.probe`, as sent to the kernel."""
    return (Path(__file__).parent / "probe.py").read_text(encoding="utf-8")


async def run_probe(
    session: KernelSession,
    call: str,
    *,
    timeout: float = INSPECT_TIMEOUT,
    module: str = "_nbmcp_probe",
    source: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``_nbmcp_probe.<call>`` in the kernel (installing the probe if needed); its JSON result.

    ``module`` and ``source`` name another kernel-side module, installed the same way (the query engine).
    """
    expression = f"__import__({module!r}).{call}"
    subshell = session.supports_subshells
    # No subshell to answer from while a cell runs: the request waits in the kernel's queue until the cell is
    # done, and a timeout must not interrupt that cell (it is not ours to stop).
    queued = not subshell and session.busy
    started = time.monotonic()
    for attempt in range(2):  # the second time, install the probe first
        code = _INSTALL.format(module=module, src=source or probe_source()) if attempt else ""
        try:
            outcome = await session.execute(
                code,
                silent=True,
                store_history=False,
                user_expressions={"r": expression},
                timeout=timeout,
                subshell=subshell,
                lock=False,
                interrupt=not queued,
            )
        except KernelDeadError as exc:
            raise ToolError(str(exc)) from exc
        if outcome.status == "timeout" and queued:
            raise ToolError(
                f"{kernel_label(session.describe())} was busy running a cell for {timeout:g} s and has no subshells "
                "(ipykernel < 7) to inspect it meanwhile; wait for the cell, or interrupt() it"
            )
        if outcome.status == "timeout":
            raise ToolError(f"the kernel did not answer the inspection within {timeout:g} s (busy?)")
        result = outcome.user_expressions.get("r") or {}
        if result.get("status") == "ok":
            text = result.get("data", {}).get("text/plain", "")
            data = json.loads(ast.literal_eval(text))
            if queued:
                data["note"] = (
                    f"note: the kernel has no subshells (ipykernel < 7), so this inspection waited "
                    f"{time.monotonic() - started:.1f} s for the running cell to finish"
                )
            return data
        if result.get("ename") not in ("ModuleNotFoundError", "ImportError", "AttributeError") or attempt:
            if outcome.status == "error" and outcome.error:
                raise ToolError(f"inspection failed: {outcome.error.get('ename')}: {outcome.error.get('evalue')}")
            raise ToolError(f"inspection failed: {result.get('ename')}: {result.get('evalue')}")
    raise ToolError("inspection failed")  # pragma: no cover


def variables_text(data: dict[str, Any], kernel: dict[str, Any]) -> str:
    """``list_variables``' answer, one line per variable."""
    lines = [f"{len(data['variables'])} of {data['total']} variables in {kernel_label(kernel)}"]
    for v in data["variables"]:
        size = "x".join(map(str, v["shape"])) if "shape" in v else (f"len {v['len']}" if "len" in v else "")
        lines.append(f"- {v['name']}: {v['type']}{' ' + size if size else ''} = {v['repr']}")
    return _with_note("\n".join(lines), data)


def _with_note(text: str, data: dict[str, Any]) -> str:
    return f"{text}\n({data['note']})" if data.get("note") else text


def describe_text(d: dict[str, Any]) -> str:
    """``inspect_variable``'s answer: type and shape, then what matters for its kind."""
    lines = [f"{d['name']}: {d['type']}"]
    if "shape" in d:
        lines[0] += " shape " + "x".join(map(str, d["shape"]))
    elif "len" in d:
        lines[0] += f" len {d['len']}"
    if d.get("kind") == "frame":
        cols = d.get("columns") or []
        lines.append("columns: " + ", ".join(f"{c.get('name')} ({c.get('dtype')})" for c in cols[:60]))
        if d.get("memory_bytes"):
            lines.append(f"memory: {d['memory_bytes']:,} bytes")
        if d.get("count_capped"):
            lines.append(f"rows: more than {d.get('rows_at_least', 1) - 1:,} (counting stopped at the cap)")
        profile = d.get("profile") or {}
        if profile.get("columns"):
            stats = ["nulls", "distinct", "min", "max", "mean"]
            table = [{"column": c["name"], **{k: c.get(k) for k in stats}} for c in profile["columns"]]
            lines += ["", "profile:", markdown_table(table, ["column", *stats])]
            if profile.get("note"):
                lines.append(f"profile {profile['note']}")
        if d.get("profile_error"):
            lines.append(f"profile failed: {d['profile_error']}")
        head = d.get("head") or []
        if head:
            lines.append("")
            lines.append(markdown_table(head, list(head[0].keys())))
    elif d.get("kind") == "callable":
        if d.get("signature"):
            lines.append(d["signature"])
        if d.get("doc"):
            lines.append(d["doc"])
    else:
        if d.get("dtype"):
            lines.append(f"dtype: {d['dtype']}")
        lines.append(str(d.get("repr", "")))
    if d.get("warning"):
        lines.append(d["warning"])
    return _with_note("\n".join(lines), d)


def rows_text(data: dict[str, Any], name: str) -> str:
    """``read_rows``' answer: which rows of how many, and the page as a markdown table."""
    shown = len(data["rows"])
    total = data["total_rows"]
    if total is None and data.get("count_capped"):
        total = f"more than {data.get('rows_at_least', 1) - 1:,}"
    if not shown:
        return f"no rows at offset {data['offset']} ({total} rows in `{name}`)"
    end = data["offset"] + shown
    head = f"rows {data['offset']}-{max(end - 1, data['offset'])} of {total} in `{name}`"
    return _with_note(head + "\n\n" + markdown_table(data["rows"], data["columns"]), data)
