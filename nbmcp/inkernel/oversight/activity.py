"""Who talks to the in-kernel server and what they asked: client records, call records, and the middleware
that keeps them (for the panel, ``%mcp log`` and the audit log).

A call's outcome beyond ``isError`` (a denial) travels in the result itself: the call pipeline marks the
result with :func:`mark_outcome`, and the recorder reads the mark and takes it off before the client sees it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ...sdk import connection_of

__all__ = ["Activity", "CallRecord", "ClientRecord", "current_client", "mark_outcome"]

current_client: contextvars.ContextVar[str] = contextvars.ContextVar("nbmcp_client", default="unknown")
"""The name the calling client gave in its handshake, for the approval prompt."""

OUTCOME_KEY = "nbmcp/outcome"
CALLS_KEPT = 500
RECORDED_METHODS = {"tools/call": "tool", "resources/read": "resource", "prompts/get": "prompt"}


@dataclass
class CallRecord:
    """One served request, for the panel, ``%mcp log`` and the audit log."""

    time: float
    client: str
    kind: str  # "tool", "resource", "prompt"
    name: str
    arguments_digest: str
    arguments_size: int
    duration_ms: float = 0.0
    outcome: str = "ok"  # ok | error | denied
    error: str | None = None


@dataclass
class ClientRecord:
    """A client as its handshake named it, and how much it has asked."""

    name: str
    version: str | None
    protocol_version: str
    first_seen: float
    last_seen: float
    requests: int = 0


def mark_outcome(result: CallToolResult, outcome: str) -> CallToolResult:
    """Tell the recorder how a call ended when ``isError`` alone cannot (``"denied"``)."""
    result.meta = {**(result.meta or {}), OUTCOME_KEY: outcome}
    return result


def is_legacy(connection: Any) -> bool:
    """True for a handshake-era connection (one session per client, notified directly)."""
    return (getattr(connection, "protocol_version", "") or "") not in MODERN_PROTOCOL_VERSIONS


class Activity:
    """The clients seen and the last :data:`CALLS_KEPT` calls; ``middleware`` goes into ``MCPServer``.

    ``on_new_client`` runs when a client is first seen (the panel redraws). ``lock`` is the server's, so a
    snapshot of the server sees clients and calls at one moment.
    """

    def __init__(self, lock: threading.RLock, on_new_client: Callable[[], None]) -> None:
        self._lock = lock
        self._on_new_client = on_new_client
        self.clients: dict[int, ClientRecord] = {}
        self.calls: deque[CallRecord] = deque(maxlen=CALLS_KEPT)
        self.call_listeners: list[Callable[[CallRecord], None]] = []

    def recent_clients(self) -> list[ClientRecord]:
        """Clients, the most recently seen first (call under the lock)."""
        return sorted(self.clients.values(), key=lambda c: -c.last_seen)

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Note the client, and record tool calls, resource reads and prompt gets."""
        client = self._note_client(ctx)
        token = current_client.set(client)
        try:
            if ctx.method in RECORDED_METHODS:
                return await self._recorded(ctx, call_next, client)
            return await call_next(ctx)
        finally:
            current_client.reset(token)

    def _note_client(self, ctx: Any) -> str:
        connection = connection_of(ctx.session)
        params = getattr(connection, "client_params", None) if connection is not None else None
        info = getattr(params, "client_info", None)
        name = getattr(info, "name", None) or "unknown"
        if connection is None:
            return name
        now = time.time()
        version = getattr(info, "version", None)
        # Modern-era HTTP requests each get a fresh connection: key those by client name instead.
        key = id(connection) if is_legacy(connection) else hash((name, version))
        with self._lock:
            record = self.clients.get(key)
            new = record is None
            if record is None:
                record = self.clients[key] = ClientRecord(
                    name, version, getattr(connection, "protocol_version", "") or "", now, now
                )
            record.last_seen = now
            record.requests += 1
        if new:
            self._on_new_client()
        return name

    async def _recorded(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]], client: str) -> Any:
        params = ctx.params or {}
        kind = RECORDED_METHODS[ctx.method]
        if kind == "resource":
            name, arguments = str(params.get("uri")), {}
        else:
            name, arguments = str(params.get("name")), params.get("arguments") or {}
        encoded = json.dumps(arguments, sort_keys=True, default=str).encode()
        record = CallRecord(
            time=time.time(),
            client=client,
            kind=kind,
            name=name,
            arguments_digest=hashlib.sha256(encoded).hexdigest()[:16],
            arguments_size=len(encoded),
        )
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            record.outcome, record.error = "error", f"{type(exc).__name__}: {exc}"[:200]
            raise
        else:
            outcome = _take_outcome(result)
            if _failed(result):
                record.outcome = outcome or "error"
                record.error = _first_text(result)[:200]
            return result
        finally:
            record.duration_ms = (time.perf_counter() - started) * 1000
            with self._lock:
                self.calls.append(record)
            for listener in list(self.call_listeners):
                with contextlib.suppress(Exception):
                    listener(record)


def _take_outcome(result: Any) -> str | None:
    """The outcome the pipeline marked on ``result`` (a wire dict or a result object), removed from it."""
    if isinstance(result, dict):
        meta = result.get("_meta")
        if not isinstance(meta, dict) or OUTCOME_KEY not in meta:
            return None
        outcome = meta.pop(OUTCOME_KEY)
        if not meta:
            del result["_meta"]
        return str(outcome)
    meta = getattr(result, "meta", None)
    if isinstance(meta, dict) and OUTCOME_KEY in meta:
        outcome = meta.pop(OUTCOME_KEY)
        if not meta:
            result.meta = None
        return str(outcome)
    return None


def _failed(result: Any) -> bool:
    # The SDK hands middleware the result as a wire dict.
    return bool(result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False))


def _first_text(result: Any) -> str:
    """The first text block of a tool result, as a wire dict or a CallToolResult."""
    if isinstance(result, dict):
        blocks = result.get("content") or []
        return next((b.get("text", "") for b in blocks if b.get("type") == "text"), "")
    return next((c.text for c in getattr(result, "content", []) if getattr(c, "type", None) == "text"), "")
