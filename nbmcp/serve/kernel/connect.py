"""Reaching a kernel: start one, find one by connection file, or use one behind a Jupyter Server.

These are the steps before any message flows; :class:`~nbmcp.serve.kernel.session.KernelSession` composes them
into its ``start`` / ``attach`` / ``remote`` constructors. A Jupyter Server is reached through its REST
API (:class:`JupyterServerAPI`: JupyterHub single-user servers, Kernel and Enterprise Gateway too) and
its kernel WebSocket (:class:`~nbmcp.serve.kernel.channels.WebSocketChannels`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ...exceptions import KernelSessionError

__all__ = [
    "JupyterServerAPI",
    "attached_client",
    "launch_kernel",
    "newest_connection_file",
    "newest_live_connection_file",
    "process_of",
]


PROBE_TIMEOUT = 1.0  # a live kernel's heartbeat echoes in about a millisecond, even while a cell runs


def newest_connection_file(runtime_dir: str | None = None, *, probe_timeout: float = PROBE_TIMEOUT) -> str:
    """The most recently modified ``kernel-*.json`` in the Jupyter runtime dir whose kernel answers."""
    return newest_live_connection_file(runtime_dir, probe_timeout=probe_timeout)[0]


def newest_live_connection_file(
    runtime_dir: str | None = None, *, probe_timeout: float = PROBE_TIMEOUT
) -> tuple[str, int]:
    """The newest ``kernel-*.json`` whose kernel answers, and how many newer files were skipped.

    Files of dead kernels stay behind (a crash, a killed server: a dozen in one runtime dir is common), so
    the newest file is not enough: every kernel's heartbeat is pinged at once and the newest that echoes
    within ``probe_timeout`` wins, without waiting for older ones.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    where = runtime_dir or jupyter_runtime_dir()
    files = sorted(glob.glob(os.path.join(where, "kernel-*.json")), key=_mtime, reverse=True)
    if not files:
        raise KernelSessionError(
            f"no kernel connection file (kernel-*.json) in {where}: start a kernel (open a notebook) first, "
            "or pass --existing CONNECTION_FILE"
        )
    chosen = _newest_answering(files, probe_timeout)
    if chosen is None:
        raise KernelSessionError(
            f"skipped all {len(files)} kernel connection files in {where}: no kernel answered within "
            f"{probe_timeout:g} s (files of dead kernels): start a kernel (open a notebook) or pass "
            "--existing CONNECTION_FILE"
        )
    return chosen, files.index(chosen)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _newest_answering(files: list[str], timeout: float) -> str | None:
    """The first of ``files`` (newest first) whose kernel echoes a heartbeat within ``timeout`` seconds."""
    import time

    import zmq
    from jupyter_client.blocking import BlockingKernelClient

    context = zmq.Context()
    sockets: dict[Any, int] = {}
    poller = zmq.Poller()
    try:
        for index, path in enumerate(files):
            try:
                client = BlockingKernelClient(connection_file=path, context=context)
                client.load_connection_file()
                sock = client.connect_hb()  # CurveZMQ keys from the file, as jupyter_client applies them
                sock.linger = 0
                sockets[sock] = index
                sock.send(b"ping", zmq.NOBLOCK)
            except Exception:  # unreadable file, bad ports: not a kernel we can use
                continue
            poller.register(sock, zmq.POLLIN)
        answered: set[int] = set()
        deadline = time.monotonic() + timeout
        while sockets:
            # the newest answering file wins once every newer one is known to be silent (at the deadline)
            remaining = deadline - time.monotonic()
            for sock, _event in poller.poll(max(0, remaining) * 1000):
                answered.add(sockets[sock])
                poller.unregister(sock)  # answered: its unread echo must not wake every later poll
            pending = [i for i in sorted(sockets.values()) if i not in answered]
            best = min(answered, default=None)
            if best is not None and (remaining <= 0 or all(i > best for i in pending)):
                return files[best]
            if remaining <= 0:
                return None
        return None
    finally:
        for sock in sockets:
            sock.close(linger=0)
        context.term()


async def launch_kernel(kernel_name: str, *, cwd: str | Path | None, extra_arguments: list[str] | None) -> Any:
    """Start a kernel process; its ``AsyncKernelManager``."""
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    with contextlib.suppress(Exception):  # CurveZMQ keys when the kernelspec and libzmq support them
        km.transport_encryption = "auto"
    args = list(extra_arguments or [])
    if _is_ipykernel(km):
        # no Out[] cache: results are not kept alive in the kernel, no `_1` variables appear;
        # history in memory: the shared ~/.ipython history.sqlite is not locked by (or filled with)
        # the assistant's cells -- its lock made a fresh kernel's first cell wait ~1 s here
        args += ["--InteractiveShell.cache_size=0", "--HistoryManager.hist_file=:memory:"]
    try:
        await km.start_kernel(extra_arguments=args, cwd=str(cwd or os.getcwd()))
    except Exception as exc:
        raise KernelSessionError(f"could not start kernel {kernel_name!r}: {exc}") from exc
    return km


def process_of(manager: Any) -> Any:
    """The ``Popen`` of a kernel a manager started (None when its provisioner has no local process)."""
    return getattr(getattr(manager, "provisioner", None), "process", None)


def attached_client(connection_file: str | Path | None) -> tuple[Any, str]:
    """An ``AsyncKernelClient`` for a running kernel and the path of its connection file (default: the
    newest in the runtime dir)."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.connect import find_connection_file

    if connection_file is None:
        path = newest_connection_file()
    else:
        try:
            path = find_connection_file(str(connection_file))
        except OSError as exc:
            raise KernelSessionError(
                f"no kernel connection file {str(connection_file)!r} ({exc}): pass the kernel-*.json of a running "
                "kernel (`%connect_info` in its notebook names it), or --existing alone for the newest that answers"
            ) from exc
    client = AsyncKernelClient(connection_file=path)
    try:
        client.load_connection_file()
    except Exception as exc:
        raise KernelSessionError(f"cannot read connection file {path}: {exc}") from exc
    return client, path


class JupyterServerAPI:
    """The kernels REST API of a Jupyter Server; every failure is a :class:`KernelSessionError` that says
    what to check, with the server's own reason (a gateway's refusal, JupyterHub's "not running")."""

    def __init__(self, server_url: str, token: str | None) -> None:
        import httpx

        self.base = server_url.rstrip("/") + "/"
        self.token = token
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=30.0)
        # a JupyterHub single-user server: {hub}/user/<name>/ (named servers: {hub}/user/<name>/<server>/)
        hub = re.match(r"(?P<hub>.*?/)user/(?P<user>[^/]+)/", self.base)
        self.hub_url, self.hub_user = (hub["hub"], unquote(hub["user"])) if hub else (None, None)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KernelSessionError(f"Jupyter Server {self.base} unreachable: {exc}") from exc
        # a redirect to the Hub (its login or spawn page) instead of an API answer
        redirect = response.is_redirect and "/hub/" in response.headers.get("location", "")
        if response.status_code >= 400 or redirect:
            answered = f"Jupyter Server {self.base} answered {response.status_code} to {method} /{path}"
            reason = _reason(response)
            answered += f" ({reason})" if reason else ""
            stopped = await self._hub_server_stopped(response)
            raise KernelSessionError(answered + self._what_to_do(response.status_code, reason, stopped=stopped))
        return response

    async def _hub_server_stopped(self, response: Any) -> bool:
        """Whether JupyterHub answered for a user server that is not running. The Hub answers GETs with 424
        (503 before JupyterHub 4) and refuses POSTs with an HTML 403 (its XSRF check): ask with a GET."""
        import httpx

        if self.hub_user is None or response.status_code not in (302, 303, 403, 424, 503):
            return False
        if response.status_code in (424, 503) and response.request.method == "GET":
            return True
        try:
            probe = await self._http.get("api", headers={"Accept": "application/json"}, follow_redirects=True)
        except httpx.HTTPError:
            return False
        return probe.status_code in (424, 503)

    def _what_to_do(self, status: int, reason: str = "", *, stopped: bool = False) -> str:
        if stopped:
            # JupyterHub answers for a user server that is not running (424; 503 on older Hubs)
            return (
                f": {self.hub_user}'s JupyterHub server is not running: start it from the Hub's home page "
                f"({self.hub_url}hub/home) or with `POST {self.hub_url}hub/api/users/{self.hub_user}/server`, "
                "then retry"
            )
        if status not in (401, 403):
            return ""
        if not self.token:
            # the usual cause: the token is exported in the shell, but an MCP client starts nbmcp with its
            # own environment, so $JUPYTER_TOKEN never arrives
            return (
                ": no token was given (no --server-token, and JUPYTER_TOKEN is not in this process's environment; "
                'MCP clients do not pass on your shell\'s): add "env": {"JUPYTER_TOKEN": "<your Jupyter '
                "token>\"} to this server's entry in the client config (`nbmcp config CLIENT -- --server-url URL` "
                "prints one)"
            )
        if self.token.startswith("<") and self.token.endswith(">"):
            return f": the token is still the placeholder {self.token}; put the Jupyter Server's token there"
        if reason and not _about_credentials(reason):
            return ""  # the server said why (a gateway refusing a user, a resource limit): not the token's fault
        if self.hub_user is not None:
            return (
                f" (check --server-token / JUPYTER_TOKEN: it must be a JupyterHub API token with the scope "
                f"access:servers!user={self.hub_user}; create one at {self.hub_url}hub/token)"
            )
        return " (check --server-token / JUPYTER_TOKEN: the server refused this token)"

    async def newest_kernel_id(self) -> str:
        """The most recently active kernel."""
        try:
            kernels = (await self.request("GET", "api/kernels")).json()
        except KernelSessionError as exc:
            if "answered 403" not in str(exc) or not await self._answers("api/kernelspecs"):
                raise
            # the token (or no token) opens the rest of the API: this server runs kernels but does not list
            # them, Kernel Gateway's default
            raise KernelSessionError(
                f"{self.base} does not list its kernels (403 on GET /api/kernels; Kernel Gateway does not by "
                "default): pass the kernel's id (--existing KERNEL_ID), or start the gateway with "
                "--JupyterWebsocketPersonality.list_kernels=True"
            ) from exc
        if not kernels:
            raise KernelSessionError(f"no running kernels on {self.base}")
        kernels.sort(key=lambda k: k.get("last_activity") or "")
        return kernels[-1]["id"]

    async def _answers(self, path: str) -> bool:
        import httpx

        try:
            return (await self._http.get(path)).status_code == 200
        except httpx.HTTPError:
            return False

    async def start_kernel(self, kernel_name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Start a kernel; ``env`` goes in the request: Kernel and Enterprise Gateway pass ``KERNEL_*``
        variables to the kernel, and ``KERNEL_USERNAME`` says whose kernel it is (default: the Hub user of a
        ``/user/<name>/`` URL, else the local user); a plain Jupyter Server ignores it."""
        import getpass

        with contextlib.suppress(Exception):  # no user name (a container without /etc/passwd entry): send none
            env = {"KERNEL_USERNAME": self.hub_user or getpass.getuser(), **(env or {})}
        body: dict[str, Any] = {"name": kernel_name, "env": env or {}}
        return (await self.request("POST", "api/kernels", json=body)).json()

    async def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"api/kernels/{kernel_id}")).json()

    async def interrupt(self, kernel_id: str) -> None:
        await self.request("POST", f"api/kernels/{kernel_id}/interrupt", json={})

    async def restart(self, kernel_id: str, timeout: float) -> None:
        await self.request("POST", f"api/kernels/{kernel_id}/restart", json={}, timeout=timeout)

    async def delete(self, kernel_id: str) -> None:
        await self._http.delete(f"api/kernels/{kernel_id}")

    def channels_url(self, kernel_id: str) -> str:
        ws_base = "ws" + self.base[len("http") :] if self.base.startswith("http") else self.base
        return f"{ws_base}api/kernels/{kernel_id}/channels"

    async def aclose(self) -> None:
        await self._http.aclose()


def _about_credentials(reason: str) -> bool:
    """Whether a refusal's reason is Jupyter's generic answer to missing or wrong credentials (without a
    token or cookie, a POST fails Jupyter's XSRF check first)."""
    reason = reason.lower()
    return reason in ("forbidden", "unauthorized") or "xsrf" in reason or "token" in reason


def _reason(response: Any) -> str:
    """The server's own explanation of an error: Jupyter's JSON ``message``/``reason``, else a short text."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return "" if text.startswith("<") else text[:300]  # an HTML page says nothing useful here
    if not isinstance(body, dict):
        return ""
    message = str(body.get("message") or "").strip()
    reason = str(body.get("reason") or "").strip()
    if message and reason and reason not in message:
        return f"{message}: {reason}"[:500]
    return (message or reason)[:500]


def _is_ipykernel(km: Any) -> bool:
    try:
        spec = km.kernel_spec
    except Exception:
        return False
    argv = " ".join(getattr(spec, "argv", []) or [])
    return getattr(spec, "language", "").lower() == "python" and "ipykernel" in argv
