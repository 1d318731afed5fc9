"""MCP logging for the in-kernel server: ``logging/setLevel``, per-request levels, and Python ``logging``
records a tool emits during its call, sent to the calling client as ``notifications/message``.

The level a request may log at comes from the client: in the handshake era from ``logging/setLevel`` (kept
per connection, :data:`DEFAULT_LEVEL` until the client sets one), in the 2026 era from the request's
``io.modelcontextprotocol/logLevel`` ``_meta`` key (absent: nothing is sent). :class:`CallLogging`'s
middleware opens a :class:`CallLog` per request and binds it to the request's context (a context variable,
which anyio copies into the worker thread that runs a sync tool). :class:`RecordForwarder`, chained into
Python's log-record factory, hands each record to the current call's log, if there is one.

Nothing here configures logging: no levels are changed, no formatters set on the user's handlers. So a
record reaches the client only if Python emits it at all (the logger's own level still applies: a tool
that wants its debug records seen sets its logger to DEBUG) *and* the client asked for its level. No
handler is added either: outside calls records go where they went before, and ``logging.basicConfig()`` in a
cell still works.
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

from ...sdk import add_request_handler, connection_of

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


class RecordForwarder:
    """Hands ``logging`` records to the current call's :class:`CallLog`.

    It sits in Python's log-record factory (chained to the one it found), which sees every record a logger
    emits, rather than on the root logger as a handler: a handler there would make ``logging.basicConfig()`` a
    no-op in the user's cells (it configures only a root logger without handlers) and would stop Python's
    ``lastResort`` printing. During a call, ``lastResort`` (which would print the tool's warnings into the
    tool's captured stderr, so into its result) is skipped: the record went to the client instead.
    """

    def __init__(self) -> None:
        self.formatter = logging.Formatter("%(message)s")
        self.previous_factory: Callable[..., logging.LogRecord] = logging.LogRecord
        self.active = False

    def factory(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous_factory(*args, **kwargs)
        log = current_log.get()
        if log is not None and self.active:
            self.forward(log, record)
        return record

    def forward(self, log: CallLog, record: logging.LogRecord) -> None:
        # The common case (a level the client did not ask for) costs a comparison and a set lookup.
        level = mcp_level(record.levelno)
        if level not in log.levels or record.name.split(".", 1)[0] in _SERVER_LOGGERS:
            return
        with contextlib.suppress(Exception):  # a record that cannot be formatted is the tool's problem, not the call's
            log.emit(level, self.formatter.format(record), record.name)


class _CallAwareLastResort(logging.Handler):
    """Python's ``lastResort``, silent for a tool's records during its call (they went to the client)."""

    def __init__(self, original: logging.Handler) -> None:
        super().__init__(original.level)
        self.original = original

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if current_log.get() is not None and record.name.split(".", 1)[0] not in _SERVER_LOGGERS:
            return False
        return bool(self.original.handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


_forwarder = RecordForwarder()
_installed = 0
_install_lock = threading.Lock()


def install() -> None:
    """Chain the forwarder into the log-record factory (reference counted: servers share it)."""
    global _installed
    with _install_lock:
        _installed += 1
        if _forwarder.active:
            return
        if logging.getLogRecordFactory() != _forwarder.factory:  # == : a bound method is a new object each time
            _forwarder.previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_forwarder.factory)
        if logging.lastResort is not None and not isinstance(logging.lastResort, _CallAwareLastResort):
            logging.lastResort = _CallAwareLastResort(logging.lastResort)
        _forwarder.active = True


def uninstall() -> None:
    global _installed
    with _install_lock:
        _installed = max(0, _installed - 1)
        if _installed:
            return
        _forwarder.active = False
        # Undo only our own layers: something chained after us keeps working (we are then a pass-through).
        if logging.getLogRecordFactory() == _forwarder.factory:
            logging.setLogRecordFactory(_forwarder.previous_factory)
        if isinstance(logging.lastResort, _CallAwareLastResort):
            logging.lastResort = logging.lastResort.original


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
