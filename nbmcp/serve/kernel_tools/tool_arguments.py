"""The arguments of serve's kernel tools (:mod:`.catalog`) that need more than a plain type or appear more than
once: their descriptions and coercions."""

from __future__ import annotations

import re
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

__all__ = ["ExecuteTimeout", "RunInBackground", "TaskId", "check_name", "number_as_text"]

ExecuteTimeout = Annotated[
    float | None,
    Field(
        description="Seconds from the call (time waiting for a busy kernel included) before the kernel is "
        "interrupted (default: server's; none in the background)."
    ),
]
RunInBackground = Annotated[
    bool,
    Field(
        description="Run as a background task and return its id at once (for long cells): then "
        "task_status, task_result, task_cancel."
    ),
]

TaskId = Annotated[str, Field(description="The id execute(..., background=true) returned.")]


def number_as_text(value: Any) -> Any:
    """A number sent for ``code`` as its text: CLI clients such as the MCP Inspector (``--tool-arg code=1``)
    send ``1`` as a JSON number, and refusing it ("Input should be a valid string") helps nobody."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_name(name: str) -> str:
    """``name`` stripped, if it is a variable name or a dotted attribute path; a ToolError saying so otherwise."""
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not _DOTTED_NAME.match(name):
        raise ToolError(f"name must be a variable name or dotted attribute path (like df.columns), got {name!r}")
    return name
