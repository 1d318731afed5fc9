"""``query`` for ``nbmcp serve``: read-only SQL over the kernel's frame variables, run in the kernel.

The engine is :mod:`nbmcp.frames.sql` with its modules :mod:`~nbmcp.frames.sql_duckdb`,
:mod:`~nbmcp.frames.sql_bounds` and :mod:`~nbmcp.frames.spark_sql`: their sources are sent to the kernel and
installed there as one module named after their digest (like the inspection probe), so a kernel without nbmcp
runs it too, as long as it has DuckDB (or Spark, for Spark frames), and a kernel that holds an older engine
(attached again after an upgrade) never runs that one. It runs through a kernel subshell when the kernel has
them, so it answers while a cell runs. The tables are the kernel's user variables that SQL can read, by their
variable names.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from ..frames import markdown_table, spark_bounds, spark_sql, sql_bounds, sql_duckdb
from ..frames import sql as engine
from .inspection import run_probe
from .outputs import error_result, text_result
from .session import KernelSession

__all__ = ["ENGINE_MODULES", "query_text", "run_query", "sql_module", "sql_source"]

# The kernel gets this long beyond the query's own limit to install the engine and answer.
_SLACK = 15.0
# The engine's other modules, installed beside it in the kernel (engine.install_siblings).
ENGINE_MODULES = {
    "sql_bounds": sql_bounds,
    "sql_duckdb": sql_duckdb,
    "spark_sql": spark_sql,
    "spark_bounds": spark_bounds,
}


def _read(module: Any) -> str:
    return Path(module.__file__).read_text(encoding="utf-8")


@cache
def sql_source() -> str:
    """The engine as sent to the kernel: :mod:`nbmcp.frames.sql`'s source, then the installation of its other
    modules beside it."""
    sources = {name: _read(module) for name, module in ENGINE_MODULES.items()}
    return _read(engine) + f"\ninstall_siblings({sources!r})\n"


@cache
def sql_module() -> str:
    """The engine's module name in the kernel: versioned by its source."""
    return "_nbmcp_sql_" + hashlib.sha256(sql_source().encode("utf-8")).hexdigest()[:12]


def query_text(data: dict[str, Any]) -> str:
    """``query``'s answer: how many rows, from what, then the rows as a markdown table."""
    n = len(data["rows"])
    shown = f"{n:,} rows" + (" (the result has more; raise limit or aggregate)" if data.get("more") else "")
    head = f"{shown} from {data.get('engine')} in {data.get('elapsed_ms', 0):.0f} ms"
    saved = data.get("saved_as")
    if saved:
        cut = ", cut at the save limit" if saved.get("truncated") else ""
        head += f"; saved as the variable {saved['name']!r} ({saved['rows']:,} rows{cut}): page it with read_rows"
    head += "".join(f"\nnote: {note}" for note in data.get("notes") or [])
    return head + "\n\n" + (markdown_table(data["rows"], data["columns"]) if n else "(no rows)")


async def run_query(
    session: KernelSession,
    sql: str,
    limit: int,
    save_as: str | None,
    *,
    timeout: float,
    read_only: bool,
    max_spill_bytes: int = engine.DEFAULT_MAX_SPILL_BYTES,
) -> CallToolResult:
    """Run ``sql`` in the kernel of ``session``; the rows as a table and structured content, or an error result.
    The kernel bounds the result (rows, long values, bytes) and DuckDB's spill disk (``max_spill_bytes``)."""
    if not isinstance(sql, str) or not sql.strip():
        raise ToolError(f"sql must be one SELECT statement, got {sql!r}; allowed: {engine.ALLOWED}")
    if not 1 <= limit <= engine.MAX_LIMIT:
        raise ToolError(f"limit must be between 1 and {engine.MAX_LIMIT}, got {limit}")
    if save_as is not None and read_only:
        raise ToolError(
            "save_as creates a variable in the kernel, which a --read-only server does not do; "
            "run the query without save_as"
        )
    call = f"run_json({sql!r}, {int(limit)}, {float(timeout)!r}, {save_as!r}, max_spill_bytes={int(max_spill_bytes)})"
    data = await run_probe(session, call, timeout=timeout + _SLACK, module=sql_module(), source=sql_source())
    kernel = session.describe()
    if "error" in data:
        return error_result(f"query: {data['error']}", kernel)
    data["kernel"] = kernel
    return text_result(query_text(data), data)
