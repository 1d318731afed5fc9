"""MCP logging for the in-kernel server: ``logging/setLevel``, per-request levels, and Python ``logging``
records a tool emits during its call, sent to the calling client as ``notifications/message``.

The level a request may log at comes from the client: in the handshake era from ``logging/setLevel`` (kept
per connection, :data:`DEFAULT_LEVEL` until the client sets one), in the 2026 era from the request's
``io.modelcontextprotocol/logLevel`` ``_meta`` key (absent: nothing is sent). :class:`CallLogging`'s
middleware opens a :class:`CallLog` per request and binds it to the request's context (a context variable,
which anyio copies into the worker thread that runs a sync tool). One handler on the root logger,
:class:`RecordForwarder`, hands each record to the current call's log, if there is one.

Nothing here configures logging: no levels are changed, no formatters set on the user's handlers. So a
record reaches the client only if Python emits it at all (the logger's own level still applies: a tool
that wants its debug records seen sets its logger to DEBUG) *and* the client asked for its level. Outside
a call the forwarder steps aside: where it is the only handler, the record goes to ``logging.lastResort``
as it would without nbmcp, so the user's own cells print their warnings as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, get_args

from mcp.server.connection import allowed_log_levels
from mcp.server.mcpserver import Context
from mcp.types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..sdk import add_request_handler, connection_of

__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "CallLog",
    "CallLogging",
    "NotebookContext",
    "RecordForwarder",
    "current_log",
    "mcp_level",
    "notebook_context",
]

LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
"""MCP's levels, least severe first (RFC 5424)."""
DEFAULT_LEVEL: LoggingLevel = "info"
"""What a handshake-era client gets before it sends ``logging/setLevel`` (the spec leaves it to the server)."""
STATE_KEY = "nbmcp/log_level"
# Loggers of the machinery serving the call: their records are about the server, not the tool (and sending a
# log message must not log one more).
_SERVER_LOGGERS = ("mcp", "mcp_types", "nbmcp", "uvicorn", "starlette", "sse_starlette", "httpx", "httpcore", "anyio")
_LOGGED_METHODS = {"tools/call", "prompts/get", "resources/read"}

current_log: contextvars.ContextVar[CallLog | None] = contextvars.ContextVar("nbmcp_call_log", default=None)


def mcp_level(levelno: int) -> LoggingLevel:
    """The MCP level of a Python ``logging`` level number."""
    if levelno < logging.INFO:
        return "debug"
    if levelno < logging.WARNING:
        return "info"
    if levelno < logging.ERROR:
        return "warning"
    if levelno < logging.CRITICAL:
        return "error"
    return "critical"


def levels_from(level: str) -> frozenset[LoggingLevel]:
    """``level`` and every more severe one."""
    return frozenset(LEVELS[LEVELS.index(level) :])  # type: ignore[arg-type]


class CallLog:
    """The ``notifications/message`` channel of one request: thread-safe, never blocks the caller.

    Records from any thread are queued and sent in order by one task on the transport's loop; :meth:`close`
    sends what is left, so every log message of a call reaches the client before its result.
    """

    def __init__(
        self,
        send: Callable[[LoggingLevel, Any, str | None], Awaitable[None]],
        levels: frozenset[LoggingLevel],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.levels = levels
        self._send = send
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: deque[tuple[LoggingLevel, Any, str | None]] = deque()
        self._scheduled = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def emit(self, level: LoggingLevel, data: Any, logger: str | None = None) -> None:
        """Queue a message if the client wants ``level`` (from any thread)."""
        if level not in self.levels or self._closing:
            return
        with self._lock:
            self._pending.append((level, data, logger))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closing: the client is gone anyway
            self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        # A fresh context: whatever sending logs is not part of the call.
        self._task = contextvars.Context().run(self._loop.create_task, self._drain())

    async def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
                item = self._pending.popleft()
            with contextlib.suppress(Exception):  # a client that went away must not fail the call
                await self._send(*item)

    async def close(self) -> None:
        """Send what is queued; later records (an abandoned tool thread) are dropped."""
        self._closing = True
        for _ in range(10_000):  # bounded: a scheduled start runs within a loop iteration or two
            task = self._task
            if task is not None and not task.done():
                await asyncio.shield(task)
            with self._lock:
                if not self._pending and not self._scheduled:
                    return
            await asyncio.sleep(0)


class RecordForwarder(logging.Handler):
    """Hands ``logging`` records to the current call's :class:`CallLog` (installed on the root logger)."""

    def __init__(self) -> None:
        super().__init__()
        self.formatter = logging.Formatter("%(message)s")

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Overridden, not emit(): no handler lock, and the common case (no call, or a level the client did not
        # ask for) costs one context-variable read and a set lookup.
        log = current_log.get()
        if log is None:
            self._last_resort(record)
            return False
        level = mcp_level(record.levelno)
        if level not in log.levels or record.name.split(".", 1)[0] in _SERVER_LOGGERS:
            return False
        try:
            log.emit(level, self.format(record), record.name)
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def _last_resort(self, record: logging.LogRecord) -> None:
        """Print where Python would have: with no other handler on the record's path, to ``lastResort``."""
        last_resort = logging.lastResort
        if last_resort is None or record.levelno < last_resort.level:
            return
        logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else logging.root
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        last_resort.handle(record)


_forwarder = RecordForwarder()
_installed = 0
_install_lock = threading.Lock()


def install() -> None:
    """Put the forwarder on the root logger (reference counted: servers share it)."""
    global _installed
    with _install_lock:
        _installed += 1
        if _forwarder not in logging.root.handlers:
            logging.root.addHandler(_forwarder)


def uninstall() -> None:
    global _installed
    with _install_lock:
        _installed = max(0, _installed - 1)
        if not _installed:
            logging.root.removeHandler(_forwarder)


class NotebookContext(Context):  # type: ignore[misc]
    """The SDK's ``Context`` whose ``log``/``debug``/``info``/``warning``/``error`` go through the call's
    :class:`CallLog`: at the level the client chose in either era (the SDK sends every level in the handshake
    era), in order with the tool's ``logging`` records, and without the SDK's deprecation warning (which
    would land in the tool's result, as the tool's stderr)."""

    async def log(self, level: LoggingLevel, data: Any, *, logger_name: str | None = None) -> None:  # type: ignore[override]
        log = current_log.get()
        if log is not None:
            log.emit(level, data, logger_name)

    async def debug(self, data: Any, *, logger_name: str | None = None) -> None:  # type: ignore[override]
        await self.log("debug", data, logger_name=logger_name)

    async def info(self, data: Any, *, logger_name: str | None = None) -> None:  # type: ignore[override]
        await self.log("info", data, logger_name=logger_name)

    async def warning(self, data: Any, *, logger_name: str | None = None) -> None:  # type: ignore[override]
        await self.log("warning", data, logger_name=logger_name)

    async def error(self, data: Any, *, logger_name: str | None = None) -> None:  # type: ignore[override]
        await self.log("error", data, logger_name=logger_name)


def notebook_context(ctx: Any) -> Any:
    """``ctx`` (the SDK's ``Context`` for a call) as a :class:`NotebookContext`, same request state."""
    if not isinstance(ctx, Context) or isinstance(ctx, NotebookContext):
        return ctx
    # A shallow copy re-classed: the request's private state comes along without naming it.
    mine = copy.copy(ctx)
    mine.__class__ = NotebookContext
    return mine


class CallLogging:
    """Serves ``logging/setLevel`` and opens each request's :class:`CallLog`; ``middleware`` goes into
    ``MCPServer``."""

    def serve(self, mcp: Any) -> None:
        add_request_handler(mcp, "logging/setLevel", SetLevelRequestParams, self._set_level)

    async def _set_level(self, ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        # The params model validated the level already: an unknown one is a JSON-RPC invalid-params error.
        connection = connection_of(ctx.session)
        if connection is not None:
            connection.state[STATE_KEY] = params.level
        return EmptyResult()

    @staticmethod
    def levels_for(ctx: Any) -> frozenset[LoggingLevel]:
        """The levels this request may log at."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return allowed_log_levels(ctx.protocol_version, ctx.meta)
        connection = connection_of(ctx.session)
        state = connection.state if connection is not None else {}
        return levels_from(state.get(STATE_KEY, DEFAULT_LEVEL))

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method not in _LOGGED_METHODS or ctx.request_id is None:
            return await call_next(ctx)
        levels = self.levels_for(ctx)
        session, request_id = ctx.session, ctx.request_id

        async def send(level: LoggingLevel, data: Any, logger: str | None) -> None:
            params = LoggingMessageNotificationParams(level=level, data=data, logger=logger)
            await session.send_notification(LoggingMessageNotification(params=params), related_request_id=request_id)

        log = CallLog(send, levels, asyncio.get_running_loop())
        token = current_log.set(log)
        try:
            return await call_next(ctx)
        finally:
            current_log.reset(token)
            await log.close()
