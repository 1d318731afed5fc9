"""MCP over stdin/stdout with a size cap per message, as HTTP has one per request body.

The SDK's ``stdio_server()`` reads stdin a whole line at a time: one 100 MB line took ``nbmcp serve`` from
98 to 627 MB, and a line that is not JSON-RPC is dropped without an answer. :func:`bounded_stdio_server`
is the same transport with our own stdin reader (``stdio_server(stdin=...)`` is public): it never holds
more than ``limit`` bytes of one line, skips the rest of a longer line as it streams past, and answers an
oversize or malformed line with a JSON-RPC error (``-32700`` parse error, ``-32600`` invalid request), so
the client learns why and the server stays up. JSON nested more than about :data:`MAX_JSON_DEPTH` levels
deep is a parse error too, found by pydantic-core's bounded parser: ``json.loads`` recurses and raised
``RecursionError`` on a 2.4 KB line of brackets. Stdout stays the SDK's, with its guard against stray writes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

import anyio
import mcp_types as types
import pydantic_core
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.message import SessionMessage

__all__ = ["MAX_MESSAGE_BYTES", "BoundedLines", "bounded_stdio_server"]

MAX_MESSAGE_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE  # what the SDK's HTTP transport accepts per request (4 MiB)
_SKIP_CHUNK = 1 << 16  # how much of an oversize line is held at once while it is skipped
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_JSON_DEPTH = 200  # pydantic-core's JSON parser (the SDK's) refuses deeper nesting

Answer = Callable[[SessionMessage], Awaitable[None]]


class BoundedLines:
    """The lines of a binary stream as text, each at most ``limit`` bytes; what the SDK's stdio transport
    iterates. A line that is too long or not a JSON-RPC message is answered through ``answer`` (set once
    the write stream exists) and not passed on."""

    def __init__(self, stream: BinaryIO, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.stream = stream
        self.limit = limit
        self.answer: Answer | None = None

    def __aiter__(self) -> BoundedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            # a worker thread, as the SDK reads stdin: a blocking read must not stall the event loop
            raw, oversize = await anyio.to_thread.run_sync(self._read_line)
            if raw is None:
                raise StopAsyncIteration
            if oversize:
                await self._reply_error(
                    None,
                    PARSE_ERROR,
                    f"Parse error: message larger than {self.limit} bytes (the stdio limit, as over HTTP); "
                    "send large data in smaller pieces",
                )
                continue
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue  # a blank line is no message: nothing to answer
            try:
                types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except Exception as exc:
                await self._reject(line, exc)
                continue
            return line  # the SDK validates it again: a few microseconds for the usual small message

    def _read_line(self) -> tuple[bytes | None, bool]:
        """One line, never more than ``limit`` bytes of it in memory: ``(None, False)`` at the end of the
        stream, ``(b"", True)`` for a line over the limit (its rest read and dropped in small chunks)."""
        line = self.stream.readline(self.limit + 1)
        if not line:
            return None, False
        if len(line) <= self.limit or line.endswith(b"\n"):
            return line, False
        while True:
            rest = self.stream.readline(_SKIP_CHUNK)
            if not rest or rest.endswith(b"\n"):
                return b"", True

    async def _reject(self, line: str, exc: Exception) -> None:
        # pydantic's parser, as the validation above: it stops at MAX_JSON_DEPTH levels with a ValueError, where
        # json.loads recurses in C until Python's recursion limit (a 2.4 KB line of "[" killed the server)
        try:
            message = pydantic_core.from_json(line)
        except ValueError as error:
            if "recursion limit" in str(error):
                reason = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
            else:
                reason = "the line is not JSON"
            await self._reply_error(None, PARSE_ERROR, f"Parse error: {reason}")
            return
        request_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            request_id = None
        first = str(exc).splitlines()
        reason = f" ({first[0]})" if first else ""
        await self._reply_error(request_id, INVALID_REQUEST, f"Invalid Request: not a JSON-RPC 2.0 message{reason}")

    async def _reply_error(self, request_id: str | int | None, code: int, message: str) -> None:
        if self.answer is None:
            return
        error = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
        await self.answer(SessionMessage(error))


@contextlib.asynccontextmanager
async def bounded_stdio_server(
    limit: int = MAX_MESSAGE_BYTES,
) -> AsyncIterator[tuple[Any, Any]]:
    """``mcp.server.stdio.stdio_server()`` with stdin read through :class:`BoundedLines`.

    Like the SDK, fd 0 points at the null device while serving (a kernel or any child reading stdin must
    not eat the client's messages) and is restored on exit.
    """
    wire, restore = _claim_stdin()
    lines = BoundedLines(wire, limit)
    try:
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
            lines.answer = write_stream.send
            yield read_stream, write_stream
    finally:
        restore()


def _claim_stdin() -> tuple[BinaryIO, Callable[[], None]]:
    """The client's end of stdin on a private descriptor, fd 0 diverted to the null device; and how to undo it."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # stdin replaced (tests, embedding): serve it as it is
        return sys.stdin.buffer, lambda: None
    try:
        private = os.dup(fd)
        null = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return sys.stdin.buffer, lambda: None
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    # closefd=False: a reader thread may still block on it after we leave; it must not be recycled under it
    wire = os.fdopen(private, "rb", closefd=False)

    def restore() -> None:
        with contextlib.suppress(OSError):
            os.dup2(private, fd)

    return wire, restore
