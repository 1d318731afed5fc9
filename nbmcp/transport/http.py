"""HTTP endpoints for all three servers: loopback names, Host/Origin/token middleware, the socket, uvicorn.

:func:`open_endpoint` is the one endpoint builder: it binds, puts :class:`SecurityMiddleware` in front of the
app with the names of the exact address it is bound to, says the URL (IPv6 bracketed) and writes and removes
the connection file. One uvicorn set-up (:func:`uvicorn_server`) then runs it either on a daemon thread with
its own event loop (:meth:`Endpoint.serve_in_thread`: the in-kernel server) or in an event loop that is
already running (:meth:`Endpoint.serve`: ``nbmcp serve --transport http``, the Jupyter Server extension).

The SDK lets any ``http://localhost:*`` origin through and turns its checks off when bound to
``0.0.0.0``, so nbmcp checks Host and Origin itself, in front of the SDK app, against the exact address
it is bound to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import discovery

__all__ = [
    "LOOPBACK",
    "Endpoint",
    "RunningServer",
    "SecurityMiddleware",
    "bind_socket",
    "loopback_names",
    "open_endpoint",
    "serve_app",
    "serve_in_thread",
    "uvicorn_server",
]

ASGIApp = Any
log = logging.getLogger(__name__)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def loopback_names(host: str, port: int) -> tuple[list[str], list[str]]:
    """Allowed Host headers and browser Origins for a server bound to ``host:port``."""
    names = {host}
    if host in LOOPBACK:
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
        if not serving.done():
            # A second cancellation while stopping goes through (the stop goes on, shielded, without us).
            done, _ = await asyncio.wait([serving], timeout=stop_timeout)
            if not done:
                server.force_exit = True  # connections that would not close in time are dropped
            elif not serving.cancelled() and serving.exception() is not None:
                log.warning("the HTTP server failed while stopping", exc_info=serving.exception())


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
        except (Exception, SystemExit) as exc:  # uvicorn exits when its start-up fails: reported by __init__
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


class Endpoint:
    """A bound HTTP endpoint: the listening socket, the app behind the Host/Origin/token checks, the URL,
    and the connection file once :meth:`publish` wrote it. Made by :func:`open_endpoint`."""

    def __init__(self, sock: socket.socket, security: SecurityMiddleware, *, path: str, requested_port: int) -> None:
        self.sock = sock
        self.security = security
        self.host, self.port = sock.getsockname()[:2]
        self.requested_port = requested_port  # differs from port when it was taken and any port would do
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}{path}"
        self._published: tuple[str, dict[str, Any]] | None = None
        self.connection_file: Path | None = None

    @property
    def token(self) -> str | None:
        return self.security.token

    async def serve(self, *, on_started: Callable[[], None] | None = None, **options: Any) -> None:
        """Serve in the running event loop until cancelled (then stop gracefully, bounded); ``options``
        override ``uvicorn.Config`` settings."""
        await serve_app(self.security, self.sock, on_started=on_started, **options)

    def serve_in_thread(self, *, name: str = "nbmcp-http") -> RunningServer:
        """Serve on a daemon thread with its own event loop (``stop()`` it; it closes the socket)."""
        return RunningServer(self.security, self.sock, name=name)

    def publish(self, file_id: str, /, **fields: Any) -> Path:
        """Write the connection file ``nbmcp-<file_id>.json`` (URL, token, pid and ``fields``), mode 0600."""
        self._published = (file_id, fields)
        info = {"url": self.url, "token": self.token, "pid": os.getpid(), **fields}
        self.connection_file = discovery.write_connection_file(file_id, info)
        return self.connection_file

    def set_token(self, token: str) -> None:
        """From now on clients must send ``token``; the connection file, if written, says so."""
        self.security.set_token(token)
        if self._published is not None:
            file_id, fields = self._published
            self.publish(file_id, **fields)

    def unpublish(self) -> None:
        """Remove the connection file (it holds the token): safe to call more than once, from a signal too."""
        path, self.connection_file, self._published = self.connection_file, None, None
        discovery.remove_connection_file(path)

    def close(self) -> None:
        """Connection file removed, socket closed."""
        self.unpublish()
        self.sock.close()


def open_endpoint(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_origins: Iterable[str] = (),
    own_origins: bool = True,
    any_port_if_taken: bool = False,
    path: str = "/mcp",
) -> Endpoint:
    """``app`` on ``host:port`` (0: any free port) behind the Host/Origin/token checks: Host must name the bound
    address (or, on loopback, ``localhost``/``127.0.0.1``), Origin must be the server's own (unless
    ``own_origins`` is False) or one of ``allowed_origins``, and every request must carry ``token`` (None: no
    token is checked, for loopback only). ``any_port_if_taken``: a taken ``port`` gives way to a free one
    (``endpoint.port != endpoint.requested_port`` says so)."""
    if host not in LOOPBACK and not token:
        raise ValueError(f"binding {host} exposes the kernel beyond this machine: a token is required")
    try:
        sock = bind_socket(host, port)
    except OSError:
        if not any_port_if_taken or port == 0:
            raise
        sock = bind_socket(host, 0)
    bound_host, bound_port = sock.getsockname()[:2]
    hosts, origins = [], []
    for name in dict.fromkeys([host, bound_host]):  # as configured (a name) and as bound (an address)
        more_hosts, more_origins = loopback_names(name, bound_port)
        hosts += more_hosts
        origins += more_origins if own_origins else []
    security = SecurityMiddleware(app, token=token, allowed_hosts=hosts, allowed_origins=[*origins, *allowed_origins])
    return Endpoint(sock, security, path=path, requested_port=port)
