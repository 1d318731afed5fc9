"""HTTP transport for all three servers: loopback names, Host/Origin/token middleware, the socket, uvicorn.

One uvicorn set-up (:func:`uvicorn_server`) runs either on a daemon thread with its own event loop
(:class:`RunningServer`: the in-kernel server) or in an event loop that is already running
(:func:`serve_app`: ``nbmcp serve --transport http``, the Jupyter Server extension).

The SDK lets any ``http://localhost:*`` origin through and turns its checks off when bound to
``0.0.0.0``, so nbmcp checks Host and Origin itself, in front of the SDK app, against the exact address
it is bound to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "RunningServer",
    "SecurityMiddleware",
    "bind_socket",
    "loopback_names",
    "serve_app",
    "serve_in_thread",
    "uvicorn_server",
]

ASGIApp = Any


def loopback_names(host: str, port: int) -> tuple[list[str], list[str]]:
    """Allowed Host headers and browser Origins for a server bound to ``host:port``."""
    names = {host}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost"}
    hosts, origins = [], []
    for name in sorted(names):
        shown = f"[{name}]" if ":" in name else name
        hosts.append(f"{shown}:{port}")
        origins += [f"http://{shown}:{port}", f"https://{shown}:{port}"]
    return hosts, origins


class SecurityMiddleware:
    """Pure ASGI middleware: Host and Origin must be allowed (403), the bearer token must match (401)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Iterable[str],
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.lower().rstrip("/") for o in allowed_origins}

    def set_token(self, token: str) -> None:
        self.token = token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "").lower()
        if host not in self.allowed_hosts:
            await _reject(
                send,
                403,
                f"Host {host!r} is not allowed; connect to http://{next(iter(sorted(self.allowed_hosts)), '')}",
            )
            return
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.allowed_origins:
            await _reject(send, 403, f"Origin {origin!r} is not allowed; add it to c.NbMCP.allowed_origins to allow it")
            return
        if self.token is not None:
            supplied = headers.get("authorization", "")
            scheme, _, credential = supplied.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
                await _reject(
                    send,
                    401,
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                    "(the token is in the connection file; `%mcp config` prints a ready config)",
                    extra=[(b"www-authenticate", b'Bearer realm="nbmcp"')],
                )
                return
        await self.app(scope, receive, send)


async def _reject(send: Any, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY (inherited by accepted connections on Linux and macOS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another port (port=0 is any free one)",
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def uvicorn_server(app: ASGIApp, *, on_started: Callable[[], None] | None = None, **options: Any) -> Any:
    """A ``uvicorn.Server`` for ``app`` as all three servers run it: no logging configuration (a library
    configures none), no access log, no WebSockets, no signal handlers (the process's owner has them);
    ``on_started()`` once it listens. ``options`` override ``uvicorn.Config`` settings."""
    import uvicorn

    config = uvicorn.Config(
        app,
        **{
            "log_config": None,
            "access_log": False,
            "lifespan": "on",
            "ws": "none",
            "timeout_graceful_shutdown": 2,
            **options,
        },
    )

    class Server(uvicorn.Server):
        def capture_signals(self) -> Any:
            return contextlib.nullcontext()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if on_started is not None:
                on_started()

    return Server(config)


async def serve_app(
    app: ASGIApp,
    sock: socket.socket,
    *,
    on_started: Callable[[], None] | None = None,
    stop_timeout: float = 5.0,
    **options: Any,
) -> None:
    """Serve ``app`` on ``sock`` in the running event loop until cancelled; then stop gracefully, waiting
    at most ``stop_timeout`` seconds. ``on_started()`` is called once it listens."""
    server = uvicorn_server(app, on_started=on_started, **options)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(serving), stop_timeout)


class RunningServer:
    """A uvicorn server running ``app`` on its own event loop in a daemon thread."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, name: str = "nbmcp-http") -> None:
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server = uvicorn_server(app, on_started=self._started.set)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        if not self._started.wait(timeout=30) or self._server.should_exit:
            self.stop()
            raise RuntimeError(f"the MCP HTTP server did not start: {self._error!r}")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self.sock]))
        except BaseException as exc:  # reported by __init__ / stop
            self._error = exc
        finally:
            self._started.set()
            try:
                # Streams (SSE watchers, listen subscriptions) may outlive serve(): end them cleanly.
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        if self.thread.is_alive():
            self._server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()


def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """``app`` served on a daemon thread at ``host:port`` (port 0: any free one)."""
    return RunningServer(app, bind_socket(host, port))
