"""``query`` for ``nbmcp serve``: read-only SQL over the kernel's frame variables, run in the kernel.

The engine is :mod:`nbmcp.frames.query.sql` with its modules (:data:`ENGINE_MODULES`: DuckDB's and Spark's sides, the
bounds, the table of backends and the answer's wording): their sources are sent to the kernel and
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

from ...frames import kinds, markdown_table
from ...frames.query import query_answer, spark_bounds, spark_sql, sql_bounds, sql_child, sql_duckdb
from ...frames.query import sql as engine
from ..kernel.session import KernelSession
from .inspection import run_probe
from .outputs import error_result, text_result

__all__ = ["ENGINE_MODULES", "query_text", "run_query", "sql_module", "sql_source"]

# The kernel gets this long beyond the query's own limit to install the engine and answer.
_SLACK = 15.0
# The engine's other modules, installed beside it in the kernel (engine.install_siblings).
ENGINE_MODULES = {
    "sql_bounds": sql_bounds,
    "sql_duckdb": sql_duckdb,
    "sql_child": sql_child,
    "spark_sql": spark_sql,
    "spark_bounds": spark_bounds,
    "kinds": kinds,
    "query_answer": query_answer,
}


def _read(module: Any) -> str:
    return Path(module.__file__).read_text(encoding="utf-8")


@cache
def sql_source() -> str:
    """The engine as sent to the kernel: :mod:`nbmcp.frames.query.sql`'s source, then the installation of its other
    modules beside it."""
    sources = {name: _read(module) for name, module in ENGINE_MODULES.items()}
    return _read(engine) + f"\ninstall_siblings({sources!r})\n"


@cache
def sql_module() -> str:
    """The engine's module name in the kernel: versioned by its source."""
    return "_nbmcp_sql_" + hashlib.sha256(sql_source().encode("utf-8")).hexdigest()[:12]


def query_text(data: dict[str, Any]) -> str:
    """``query``'s answer as text, worded as the in-kernel server words it (:mod:`nbmcp.frames.query.query_answer`)."""
    return query_answer.answer_text(data, markdown_table)


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
