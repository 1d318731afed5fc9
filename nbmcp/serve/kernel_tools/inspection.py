"""Inspecting a kernel's variables: the answers of its language's adapter (:mod:`..languages`) as text.

:func:`run_probe` evaluates a call of a kernel-side Python module (the probe, :mod:`..languages.probe`, by default;
the SQL engine of ``query``), installed on first use; see :mod:`..languages.python`.
"""

from __future__ import annotations

from typing import Any

from ...frames import markdown_table
from ..kernel.session import KernelSession
from ..languages.python import probe_source, run_module
from ..languages.transport import INSPECT_TIMEOUT
from .outputs import kernel_label

__all__ = ["INSPECT_TIMEOUT", "describe_text", "probe_source", "rows_text", "run_probe", "variables_text"]


async def run_probe(
    session: KernelSession,
    call: str,
    *,
    timeout: float = INSPECT_TIMEOUT,
    module: str = "_nbmcp_probe",
    source: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``_nbmcp_probe.<call>`` in a Python kernel (installing the probe if needed); its JSON result.

    ``module`` and ``source`` name another kernel-side module, installed the same way (the query engine).
    """
    return await run_module(session, call, timeout=timeout, module=module, source=source)


def variables_text(data: dict[str, Any], kernel: dict[str, Any]) -> str:
    """``list_variables``' answer, one line per variable."""
    lines = [f"{len(data['variables'])} of {data['total']} variables in {kernel_label(kernel)}"]
    for v in data["variables"]:
        size = _dims(v["shape"]) if "shape" in v else (f"len {v['len']}" if "len" in v else "")
        lines.append(f"- {v['name']}: {v['type']}{' ' + size if size else ''} = {v['repr']}")
    return _with_note("\n".join(lines), data)


def _dims(shape: list[Any]) -> str:
    """``3x4``; a dimension not counted (a lazy table's rows) is ``?``."""
    return "x".join("?" if n is None else str(n) for n in shape)


def _with_note(text: str, data: dict[str, Any]) -> str:
    return f"{text}\n({data['note']})" if data.get("note") else text


def describe_text(d: dict[str, Any]) -> str:
    """``inspect_variable``'s answer: type and shape, then what matters for its kind."""
    lines = [f"{d['name']}: {d['type']}"]
    if "shape" in d:
        lines[0] += " shape " + _dims(d["shape"])
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
    elif isinstance(total, int):
        total = f"{total:,}"  # every number of the line in one format: "rows 1,999,990-1,999,994 of 2,000,000"
    if not shown:
        return f"no rows at offset {data['offset']:,} ({total} rows in `{name}`)"
    end = data["offset"] + shown
    head = f"rows {data['offset']:,}-{max(end - 1, data['offset']):,} of {total} in `{name}`"
    return _with_note(head + "\n\n" + markdown_table(data["rows"], data["columns"]), data)
