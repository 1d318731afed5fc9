"""A lean keep-alive HTTP/1.1 client for forwarding to loopback MCP servers.

The forwarder sits on every proxied call, so its cost is the proxy's cost. httpx's layers (models,
auth flow, anyio streams, several writes per request) cost about a millisecond per request here; this
client writes each request in one syscall, parses with h11 (the same parser httpx uses underneath) and
reuses connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import h11

__all__ = ["UpstreamPool", "UpstreamResponse"]

READ_SIZE = 65536


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(our_role=h11.CLIENT)

    def reusable(self) -> bool:
        return (
            self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class UpstreamResponse:
    """Status and headers; the body arrives through ``chunks()``. ``aclose()`` returns or drops the connection."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int], connection: _Connection, head: h11.Response) -> None:
        self._pool = pool
        self._key = key
        self._connection = connection
        self.status_code = head.status_code
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
        self._done = False

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read."""
        return self._done

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as the upstream sends them (what is already buffered comes as one chunk)."""
        connection = self._connection
        while not self._done:
            event = connection.h11.next_event()
            if event is h11.NEED_DATA:
                data = await connection.reader.read(READ_SIZE)
                connection.h11.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                body = bytearray(event.data)
                # Coalesce what is already parsed or buffered: each write costs the client a wake-up.
                while True:
                    more = connection.h11.next_event()
                    if isinstance(more, h11.Data):
                        body += more.data
                        continue
                    if isinstance(more, h11.EndOfMessage):
                        self._done = True
                    elif more is not h11.NEED_DATA:
                        raise h11.RemoteProtocolError(f"unexpected {type(more).__name__} in a response body")
                    break
                yield bytes(body)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self._done = True
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a response body")

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is None:
            return
        if self._done and connection.h11.our_state is h11.DONE and connection.h11.their_state is h11.DONE:
            connection.h11.start_next_cycle()
            self._pool.release(self._key, connection)
        else:
            connection.close()


class UpstreamPool:
    """Keep-alive connections to loopback upstreams, one request at a time per connection."""

    def __init__(self, *, max_idle_per_host: int = 16, connect_timeout: float = 5.0) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._connect_timeout = connect_timeout

    async def request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> UpstreamResponse:
        """Send a request and read the response head. Raises OSError when the upstream is not answering."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"  # the Hub service's one URL may reach the Hub's proxy over TLS
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        shown_host = f"[{host}]" if ":" in host else host
        request_headers = [("Host", f"{shown_host}:{port}"), *headers, ("Content-Length", str(len(body)))]
        key = (host, port)
        # A pooled connection the upstream closed while idle fails before any reply: retry once on a new one.
        for attempt in (0, 1):
            connection = self._take(key) if attempt == 0 else None
            fresh = connection is None
            if connection is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=secure or None), self._connect_timeout
                )
                connection = _Connection(reader, writer)
            try:
                data = connection.h11.send(h11.Request(method=method, target=target, headers=request_headers))
                data += connection.h11.send(h11.Data(data=body)) if body else b""
                data += connection.h11.send(h11.EndOfMessage())
                connection.writer.write(data)
                head = await self._read_head(connection)
            except (OSError, h11.ProtocolError, asyncio.IncompleteReadError, EOFError):
                connection.close()
                if fresh:
                    raise OSError(f"no answer from {host}:{port}") from None
                continue
            return UpstreamResponse(self, key, connection, head)
        raise OSError(f"no answer from {host}:{port}")

    @staticmethod
    async def _read_head(connection: _Connection) -> h11.Response:
        while True:
            event = connection.h11.next_event()
            if event is h11.NEED_DATA:
                data = await connection.reader.read(READ_SIZE)
                if not data:
                    raise EOFError
                connection.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                return event
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        return None

    def release(self, key: tuple[str, int], connection: _Connection) -> None:
        """Take back a connection whose response was read to the end: kept for reuse, or closed."""
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._max_idle and connection.reusable():
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
