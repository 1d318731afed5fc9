"""HTTP transport: uvicorn on a daemon thread, bearer token, Host/Origin checks.

The SDK lets any ``http://localhost:*`` origin through and turns its checks off when bound to
``0.0.0.0``, so nbmcp checks Host and Origin itself, in front of the SDK app, against the exact address
it is bound to.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any

from . import __version__, capture, discovery
from .config import load_config
from .registry import default_registry
from .server import NbMCPServer

__all__ = ["RunningServer", "SecurityMiddleware", "bind_socket", "loopback_names", "serve_in_thread"]

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


class RunningServer:
    """A uvicorn server running ``app`` on its own event loop in a daemon thread."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, name: str = "nbmcp-http") -> None:
        import uvicorn

        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

        started = self._started

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                started.set()

        self._server = _Server(config)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        if not started.wait(timeout=30) or self._server.should_exit:
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

    def call_soon(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop from any thread; returns a concurrent Future."""
        if self.loop is None or self.loop.is_closed():
            coro.close()
            return None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        if self.thread.is_alive():
            self._server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()


def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    return RunningServer(app, bind_socket(host, port))


# -- the process's in-kernel server ------------------------------------------------------------


class ServerInfo:
    """Where the running server listens and how to connect to it. ``repr`` never shows the token."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        host: str,
        port: int,
        server_id: str,
        kernel_id: str | None,
        connection_file: str | None,
    ) -> None:
        self.url = url
        self.token = token
        self.host = host
        self.port = port
        self.server_id = server_id
        self.kernel_id = kernel_id
        self.connection_file = connection_file

    def __repr__(self) -> str:
        return f"ServerInfo(url={self.url!r}, token='{self.token[:4]}…', connection_file={self.connection_file!r})"

    def client_config(self, client: str = "generic") -> dict[str, Any]:
        """A ready-to-paste client configuration (contains the token: treat it as a secret)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        key = f"nbmcp-{(self.kernel_id or self.server_id)[:8]}"
        if client == "claude":
            # Claude Desktop launches stdio commands only; the bridge finds this kernel's server itself.
            bridge_args = ["bridge", "--kernel-id", self.kernel_id] if self.kernel_id else ["bridge", "--url", self.url]
            return {"mcpServers": {key: {"command": "nbmcp", "args": bridge_args}}}
        if client == "claude-code":
            return {"mcpServers": {key: {"type": "http", "url": self.url, "headers": headers}}}
        if client == "vscode":
            return {"servers": {key: {"type": "http", "url": self.url, "headers": headers}}}
        if client == "cursor":
            return {"mcpServers": {key: {"url": self.url, "headers": headers}}}
        if client == "generic":
            return {"url": self.url, "headers": headers, "transport": "streamable-http"}
        raise ValueError(f"unknown client {client!r}; choose claude, claude-code, vscode, cursor or generic")


class InKernelServer:
    """An :class:`~nbmcp.server.NbMCPServer` served over HTTP on a daemon thread, with its connection file."""

    def __init__(
        self,
        mcp_server: Any,
        *,
        host: str,
        port: int,
        token: str,
        allowed_origins: Iterable[str],
        kernel_id: str | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1") and not token:
            raise ValueError(f"binding {host} exposes the kernel beyond this machine: a token is required")
        self.mcp_server = mcp_server
        sock = bind_socket(host, port)
        self.host, self.port = sock.getsockname()[:2]
        hosts, origins = loopback_names(self.host, self.port)
        self.security = SecurityMiddleware(
            mcp_server.app(), token=token, allowed_hosts=hosts, allowed_origins=[*origins, *allowed_origins]
        )
        capture.install()
        try:
            self.running = RunningServer(self.security, sock)
        except BaseException:
            capture.uninstall()
            raise
        assert self.running.loop is not None
        mcp_server.attach_loop(self.running.loop)
        self.server_id = kernel_id or f"pid{os.getpid()}"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.info = ServerInfo(
            url=f"http://{shown}:{self.port}/mcp",
            token=token,
            host=self.host,
            port=self.port,
            server_id=self.server_id,
            kernel_id=kernel_id,
            connection_file=None,
        )
        self._write_connection_file()

    def _write_connection_file(self) -> None:
        path = discovery.write_connection_file(
            self.server_id,
            {
                "url": self.info.url,
                "token": self.info.token,
                "pid": os.getpid(),
                "kernel_id": self.info.kernel_id,
                "server_id": self.server_id,
                "version": __version__,
            },
        )
        self.info.connection_file = str(path)

    def rotate_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self.security.set_token(token)
        self.info.token = token
        self._write_connection_file()
        return token

    def stop(self) -> None:
        try:
            self.running.stop()
        finally:
            self.mcp_server.close()
            discovery.remove_connection_file(self.info.connection_file)
            capture.uninstall()


_current: InKernelServer | None = None
_current_lock = threading.Lock()


def start_server(
    *,
    port: int | None = None,
    token: str | None = None,
    ip: str | None = None,
    shell: Any = None,
    registry: Any = None,
    main_thread_runner: Any = None,
    execute_runner: Any = None,
    **options: Any,
) -> ServerInfo:
    """Start this process's MCP server (idempotent: returns the running one's info)."""
    global _current
    with _current_lock:
        if _current is not None:
            return _current.info
        config = load_config(shell, port=port, token=token, ip=ip, **options)
        kernel_id = _kernel_id()
        server = NbMCPServer(
            registry if registry is not None else default_registry,
            output_budget=config.output_budget,
            image_max_px=config.image_max_px,
            mode="tools" if config.effective_mode == "execute" and execute_runner is None else config.effective_mode,
            approval_policy=config.approval_policy,
            approval_timeout=config.approval_timeout,
            main_thread_timeout=config.main_thread_timeout,
            main_thread_runner=main_thread_runner,
            execute_runner=execute_runner,
        )
        _current = InKernelServer(
            server,
            host=config.ip,
            port=config.port,
            token=config.token or secrets.token_urlsafe(32),
            allowed_origins=config.allowed_origins,
            kernel_id=kernel_id,
        )
        _current.config = config  # type: ignore[attr-defined]
        running = _current
        try:
            from .audit import AuditLog

            running.audit = AuditLog(  # type: ignore[attr-defined]
                config.audit_log or None, server_id=running.server_id, secret=lambda: running.info.token
            )
        except BaseException:
            _current = None
            running.stop()
            raise
        server.call_listeners.append(running.audit)  # type: ignore[attr-defined]
        return _current.info


def stop_server() -> None:
    global _current
    with _current_lock:
        server, _current = _current, None
    if server is not None:
        try:
            server.stop()
        finally:
            audit = getattr(server, "audit", None)
            if audit is not None:
                audit.close()


def running_info() -> ServerInfo | None:
    server = _current
    return server.info if server is not None else None


def current_server() -> InKernelServer | None:
    return _current


def _kernel_id() -> str | None:
    """The id of the kernel this process is, from its connection file name (``kernel-<id>.json``)."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:
        return None
    stem = name.removesuffix(".json")
    return stem.removeprefix("kernel-") or None
