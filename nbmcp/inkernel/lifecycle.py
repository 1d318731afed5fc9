"""The process's in-kernel server: :class:`InKernelServer` serves an ``NbMCPServer`` over HTTP with a connection
file; ``start_server``/``stop_server`` keep the one per process; :class:`ServerInfo` says how clients reach it."""

from __future__ import annotations

import dataclasses
import gc
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..transport import open_endpoint
from .calls import capture
from .config import InKernelSettings, load_config
from .oversight.audit import AuditLog
from .registry import default_registry
from .server import NbMCPServer

__all__ = [
    "InKernelServer",
    "ServerInfo",
    "bridge_command",
    "current_server",
    "running_info",
    "start_server",
    "stop_server",
]

# Where the Jupyter runtime dir comes from when it is not the default: a client launching the bridge has none of
# the kernel's environment, so the config passes these on (else the bridge looks for the connection file elsewhere).
_RUNTIME_DIR_VARIABLES = ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "XDG_DATA_HOME")


def bridge_command() -> list[str]:
    """How a client should launch ``nbmcp bridge``: the script installed beside this Python (clients such as Claude
    Desktop do not have the environment's ``bin`` on their PATH), else ``python -m nbmcp``."""
    script = Path(sys.executable).with_name("nbmcp")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "bridge"]
    return [sys.executable, "-m", "nbmcp", "bridge"]


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
        notice: str | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.host = host
        self.port = port
        self.server_id = server_id
        self.kernel_id = kernel_id
        self.connection_file = connection_file
        self.notice = notice  # something the user should know about this start (e.g. the port changed)

    def __repr__(self) -> str:
        return f"ServerInfo(url={self.url!r}, token='{self.token[:4]}…', connection_file={self.connection_file!r})"

    def client_config(self, client: str = "generic") -> dict[str, Any]:
        """A ready-to-paste client configuration (contains the token: treat it as a secret)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        key = f"nbmcp-{(self.kernel_id or self.server_id)[:8]}"
        if client == "claude":
            # Claude Desktop launches stdio commands only; the bridge finds this kernel's server (and its token)
            # through the connection file, so no secret goes into this config.
            command, *args = bridge_command()
            args += ["--kernel-id", self.kernel_id] if self.kernel_id else ["--url", self.url]
            entry: dict[str, Any] = {"command": command, "args": args}
            env = {name: os.environ[name] for name in _RUNTIME_DIR_VARIABLES if os.environ.get(name)}
            if not self.kernel_id:  # no connection file to find by id: the bridge takes the token from here
                env["NBMCP_TOKEN"] = self.token
            if env:
                entry["env"] = env
            return {"mcpServers": {key: entry}}
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
    """An :class:`~nbmcp.inkernel.server.NbMCPServer` served over HTTP on a daemon thread as its settings say
    (address, token, origins), with its connection file and the audit log the settings name."""

    def __init__(
        self, mcp_server: NbMCPServer, *, kernel_id: str | None = None, any_port_if_taken: bool = False
    ) -> None:
        """``any_port_if_taken``: if the port is in use, listen on a free one instead and say so in ``info.notice``
        (for a port kept from an earlier start, which another process may have taken since)."""
        settings = mcp_server.settings
        self.mcp_server = mcp_server
        self.settings = settings
        self.server_id = kernel_id or f"pid{os.getpid()}"
        # The token may be rotated: the log asks for the current one when it redacts.
        self.audit = AuditLog(settings.audit_log or None, server_id=self.server_id, secret=lambda: self.endpoint.token)
        try:
            self._serve(kernel_id, any_port_if_taken)
        except BaseException:  # cleaned up, then raised on
            self.audit.close()
            raise
        mcp_server.call_listeners.append(self.audit)
        mcp_server.approval_listeners.append(self.audit.approval)

    def _serve(self, kernel_id: str | None, any_port_if_taken: bool) -> None:
        settings = self.settings
        self.endpoint = open_endpoint(
            self.mcp_server.app(),
            host=settings.ip,
            port=settings.port,
            token=settings.token,
            allowed_origins=settings.allowed_origins,
            any_port_if_taken=any_port_if_taken,
        )
        notice = None
        if self.endpoint.requested_port and self.endpoint.port != self.endpoint.requested_port:  # 0: any port
            notice = (
                f"port {settings.port} (this kernel's earlier port) is taken now, so the server moved to port "
                f"{self.endpoint.port}: URL-based configs need the new URL (`%mcp config vscode|cursor`)"
            )
        self.host, self.port = self.endpoint.host, self.endpoint.port
        capture.install()
        try:
            self.running = self.endpoint.serve_in_thread()
        except BaseException:  # cleaned up, then raised on
            capture.uninstall()
            self.endpoint.close()
            raise
        assert self.running.loop is not None
        self.mcp_server.attach_loop(self.running.loop)
        self.info = ServerInfo(
            url=self.endpoint.url,
            token=settings.token,
            host=self.host,
            port=self.port,
            server_id=self.server_id,
            kernel_id=kernel_id,
            connection_file=None,
            notice=notice,
        )
        try:
            self._publish()
        except BaseException:  # cleaned up, then raised on
            self.running.stop()
            self.mcp_server.close()
            capture.uninstall()
            raise

    def _publish(self) -> None:
        path = self.endpoint.publish(
            self.server_id, kernel_id=self.info.kernel_id, server_id=self.server_id, version=__version__
        )
        self.info.connection_file = str(path)

    def rotate_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self.endpoint.set_token(token)  # rewrites the connection file
        self.info.token = token
        return token

    def stop(self) -> None:
        """Stop serving: port freed, threads joined, connection file removed, audit log flushed and closed."""
        try:
            self.running.stop()
        finally:
            self.mcp_server.close()
            self.endpoint.close()
            capture.uninstall()
            self.audit.close()


@dataclass(frozen=True)
class _Kept:
    """What a restart keeps from the previous server in this process (the kernel's life): clients configured
    with its URL and token keep working, and a mode the user chose is not silently reset."""

    ip: str
    port: int
    token: str
    mode: str


_current: InKernelServer | None = None
_kept: _Kept | None = None
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
    """Start this process's MCP server (idempotent: returns the running one's info).

    A restart (after ``stop_server``, ``%mcp stop``, ``%unload_ext``) keeps the earlier port, token and mode,
    unless asked otherwise: ``port=`` (0: a new free port), a configured port (``NBMCP_PORT``,
    ``c.NbMCP.port``), ``token=``, ``mode=`` or ``allow_execute=``. A kept port another process took meanwhile
    gives way to a free one, and ``info.notice`` says so.
    """
    global _current
    with _current_lock:
        if _current is not None:
            return _current.info
        config = load_config(shell, port=port, token=token, ip=ip, **options)
        kept = _kept
        keep_port = kept is not None and port is None and config.port == 0 and config.ip == kept.ip
        mode = config.effective_mode
        if kept is not None and "mode" not in options and "allow_execute" not in options:
            mode = kept.mode
        if mode == "execute" and execute_runner is None:
            mode = "tools"  # no kernel to run code in (a plain Python process)
        settings = dataclasses.replace(
            InKernelSettings.from_config(config),
            mode=mode,
            port=kept.port if keep_port and kept is not None else config.port,
            token=(kept.token if kept is not None and token is None else config.token) or secrets.token_urlsafe(32),
        )
        server = NbMCPServer(
            registry if registry is not None else default_registry,
            settings,
            main_thread_runner=main_thread_runner,
            execute_runner=execute_runner,
        )
        try:
            _current = InKernelServer(server, kernel_id=_kernel_id(), any_port_if_taken=keep_port)
        except BaseException:  # cleaned up, then raised on
            server.close()  # unsubscribe from the registry: nothing serves this one
            raise
        if config.gc_freeze and not gc.get_freeze_count():  # once: a later start would freeze the user's objects
            gc.freeze()
        return _current.info


def stop_server() -> None:
    """Stop this process's server, remembering its port, token and mode for the next start."""
    global _current, _kept
    with _current_lock:
        server, _current = _current, None
        if server is not None:
            _kept = _Kept(
                # The address as configured ("localhost" stays "localhost"), to compare with the next start's.
                ip=server.settings.ip,
                port=server.info.port,
                token=server.info.token,
                mode=server.mcp_server.mode,
            )
    if server is not None:
        server.stop()


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
