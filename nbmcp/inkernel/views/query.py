"""The built-in ``query`` tool: read-only SQL over the exposed frames, served in every mode.

The engine and its safety checks are :mod:`nbmcp.frames.query.sql`; this module picks the sources (the enabled
exposed objects SQL can read), answers as ``nbmcp serve`` does (:mod:`nbmcp.frames.query.query_answer`) and, for
``save_as``, exposes the result as a new object. ``save_as`` never replaces an object the notebook exposed, only
earlier results of ``query``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mcp.types import CallToolResult, TextContent

from ... import frames
from ...frames.query import query_answer, sql
from ..registry import Registry, ToolSpec
from .objects import builtin_tool

__all__ = ["QueryTool"]

_CALL_SLACK = 15.0  # seconds a call may take beyond the query's own time limit (connecting, fetching, converting)


class QueryTool:
    """``query`` over ``registry``'s objects, with the owner's limits (``c.NbMCP.query_*``)."""

    def __init__(
        self,
        registry: Registry,
        *,
        timeout: float = sql.DEFAULT_TIMEOUT,
        save_max_rows: int = sql.DEFAULT_SAVE_MAX_ROWS,
        memory_limit: str = sql.DEFAULT_MEMORY_LIMIT,
        max_result_bytes: int = sql.DEFAULT_MAX_RESULT_BYTES,
        save_max_bytes: int = sql.DEFAULT_SAVE_MAX_BYTES,
        max_spill_bytes: int = sql.DEFAULT_MAX_SPILL_BYTES,
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.save_max_rows = save_max_rows
        self.memory_limit = memory_limit
        # Bounds outside DuckDB's memory_limit: c.NbMCP.max_resource_bytes, query_save_max_bytes, query_max_spill_bytes
        self.max_result_bytes = max_result_bytes
        self.save_max_bytes = save_max_bytes
        self.max_spill_bytes = max_spill_bytes
        # name -> id of the result this tool exposed there: save_as replaces only those, while they are still ours
        self._saved: dict[str, int] = {}

    def sources(self) -> dict[str, Any]:
        """The exposed objects SQL can read, by name (objects whose variable is gone are left out)."""
        found = {}
        for obj in self.registry.snapshot().objects.values():
            if not obj.enabled:
                continue
            try:
                value = obj.get()
            except LookupError:
                continue
            if sql.is_queryable(value):
                found[obj.name] = value
        return found

    def run(self, sql_text: str, limit: int = sql.DEFAULT_LIMIT, save_as: str | None = None) -> CallToolResult:
        """Run the query; a result with a markdown table and the rows, or an exception saying what is wrong."""
        if save_as is not None:
            self._check_save_name(save_as)
        result = sql.run_query(
            sql_text,
            self.sources(),
            limit=limit,
            timeout=self.timeout,
            save=save_as is not None,
            save_max_rows=self.save_max_rows,
            memory_limit=self.memory_limit,
            max_result_bytes=self.max_result_bytes,
            save_max_bytes=self.save_max_bytes,
            max_spill_bytes=self.max_spill_bytes,
        )
        info = query_answer.payload(
            result,
            sql.shown_records(result.rows),
            save_as=save_as,
            save_max_rows=self.save_max_rows,
            save_max_bytes=self.save_max_bytes,
        )
        if save_as is not None:
            self.registry.expose(result.saved, save_as, description=f"query result: {sql_text.strip()[:200]}")
            self._saved[save_as] = id(result.saved)
        text = query_answer.answer_text(info, frames.markdown_table)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=info)

    def _check_save_name(self, name: Any) -> None:
        problem = query_answer.save_as_problem(name)
        if problem is not None:
            raise sql.QueryRefused(problem)
        exposed = self.registry.snapshot().objects.get(name)
        if exposed is not None and id(exposed.target) != self._saved.get(name):
            raise sql.QueryRefused(
                f"save_as={name!r} is already exposed by the notebook; query does not replace it: choose another name"
            )

    def spec(self) -> ToolSpec:
        def query(sql: str, limit: int = sql.DEFAULT_LIMIT, save_as: str | None = None) -> CallToolResult:
            """Run one read-only SQL SELECT (DuckDB dialect; Spark SQL for Spark frames) over the exposed frames,
            by their names as list_objects shows them. No files, settings or other statements; a time limit
            and a row cap apply.

            Args:
                sql: one SELECT or WITH ... SELECT statement, e.g. SELECT city, count(*) FROM sales GROUP BY city.
                limit: at most this many rows come back (1-1000).
                save_as: also expose the result under this new name, for paging with read_rows.
            """
            return self.run(sql, limit, save_as)

        # The rows are bounded by ``limit`` (at most 1000), like a read_rows page: they stay whole.
        spec = builtin_tool(query, read_only=True, budget_structured=False)
        # The query interrupts itself at ``timeout``; the call's own limit (else c.NbMCP.tool_timeout) comes later,
        # so the client hears why and no thread is abandoned with DuckDB still running.
        return dataclasses.replace(spec, timeout=self.timeout + _CALL_SLACK)
