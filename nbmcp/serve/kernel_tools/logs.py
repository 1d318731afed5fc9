"""Kernel stderr (warnings included) of an ``execute``, sent as MCP log messages to a client that asked for logs.

A client asks with ``logging/setLevel`` (handshake era, kept per connection) or a request's
``io.modelcontextprotocol/logLevel`` ``_meta`` key (2026 era). Then stderr is sent as ``notifications/message``
(``warning`` for a Python warning, else ``info``) before the result, and left out of the result; text below the
client's level is dropped. A client that did not ask gets stderr in the result, as before.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from mcp.server.connection import allowed_log_levels
from mcp.types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ...sdk import add_request_handler, connection_of

__all__ = ["forward_stderr", "requested_levels", "serve_set_level", "stderr_records"]

STATE_KEY = "nbmcp/log_level"
LOGGER = "kernel.stderr"
# How Python's warnings module writes a warning: "file.py:12: UserWarning: message", then the source line indented.
_WARNING = re.compile(r"^.*:\d+: [A-Z]\w*Warning: ")


def serve_set_level(mcp: Any) -> None:
    """Serve ``logging/setLevel`` on ``mcp``: the level is kept on the client's connection."""

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        connection = connection_of(ctx.session)
        if connection is not None:
            connection.state[STATE_KEY] = params.level
        return EmptyResult()

    add_request_handler(mcp, "logging/setLevel", SetLevelRequestParams, set_level)


def requested_levels(request: Any) -> frozenset[LoggingLevel] | None:
    """The levels the client of ``request`` (a low-level request context) takes; None if it asked for no logs."""
    if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
        levels = allowed_log_levels(request.protocol_version, request.meta)
        return levels or None
    connection = connection_of(request.session)
    level = connection.state.get(STATE_KEY) if connection is not None else None
    if level is None:
        return None
    return _at_or_above(level)


def _at_or_above(level: str) -> frozenset[LoggingLevel]:
    ordered: tuple[LoggingLevel, ...] = (
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    )
    return frozenset(ordered[ordered.index(level) :])  # type: ignore[arg-type]


async def forward_stderr(ctx: Any, outputs: list[dict[str, Any]]) -> bool:
    """Send the stderr outputs of a cell as log messages of ``ctx``'s request; True if the client takes logs
    (stderr then stays out of the result)."""
    if ctx is None:
        return False
    request = ctx.request_context
    levels = requested_levels(request)
    if levels is None:
        return False
    for output in outputs:
        if output.get("output_type") != "stream" or output.get("name") != "stderr":
            continue
        for level, text in stderr_records(str(output.get("text", ""))):
            if level not in levels:
                continue
            params = LoggingMessageNotificationParams(level=level, data=text, logger=LOGGER)
            with contextlib.suppress(Exception):  # a client that went away does not fail the call
                await request.session.send_notification(
                    LoggingMessageNotification(params=params), related_request_id=request.request_id
                )
    return True


def stderr_records(text: str) -> list[tuple[LoggingLevel, str]]:
    """Stderr text cut into log records: each Python warning (its header line and the indented source line
    after it) a ``warning``, each run of other lines an ``info``."""
    records: list[tuple[LoggingLevel, list[str]]] = []
    for line in text.splitlines():
        if _WARNING.match(line):
            records.append(("warning", [line]))
        elif records and (records[-1][0] == "info" or (line[:1].isspace() and len(records[-1][1]) == 1)):
            records[-1][1].append(line)
        else:
            records.append(("info", [line]))
    return [(level, "\n".join(lines)) for level, lines in records if "".join(lines).strip()]
