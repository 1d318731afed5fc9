"""One Jupyter kernel, driven over the Jupyter messaging protocol.

``KernelSession`` starts a kernel (jupyter_client ``AsyncKernelManager``), attaches to a running one by
its connection file, or drives a kernel behind a Jupyter Server through its REST + WebSocket API
(:mod:`.connect`). All three share one message router: a reader task per channel (:mod:`.channels`) hands
every message to the request that caused it (``parent_header.msg_id``), so an ``execute`` awaits its own
iopub messages directly (:mod:`.execution`) -- no polling on the hot path. Kernel death is checked only
while waiting and only every ``LIVENESS_INTERVAL`` seconds.

This module owns the kernel (start, attach, remote; restart, shutdown; liveness and death). The router is
:mod:`.message_router`, execute/inspect/interrupt are :mod:`.kernel_requests`: the bases of ``KernelSession``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any, Literal

import anyio

from ...discovery import pid_alive
from ...exceptions import KernelDeadError, KernelSessionError
from .bounds import DEFAULT_OUTPUT_LIMIT
from .channels import Inbox, KernelChannels, WebSocketChannels, ZMQChannels
from .connect import JupyterServerAPI, attached_client, launch_kernel, newest_connection_file, process_of
from .execution import ExecutionOutcome, KernelLink, imports_ready, warm_imports
from .kernel_requests import KernelRequests

__all__ = [
    "ExecutionOutcome",
    "KernelDeadError",
    "KernelSession",
    "KernelSessionError",
    "newest_connection_file",
]

READY_TIMEOUT = 60.0
START_ATTEMPTS = 3  # launches of a kernel that dies during start-up (see KernelSession.connect)


class KernelSession(KernelRequests):
    """One kernel: started (owned), attached (never shut down by us) or remote (Jupyter Server).

    Use the async constructors :meth:`start`, :meth:`attach` and :meth:`remote`.
    """

    #: Characters kept of each stream output of an execution (head and tail, :mod:`.bounds`); serve sets it.
    output_limit: int = DEFAULT_OUTPUT_LIMIT

    def __init__(self, kind: Literal["started", "attached", "remote"]) -> None:
        self.kind = kind
        self.kernel_id: str | None = None
        self.kernel_name: str = "python3"
        self.connection_file: str | None = None
        self.server_url: str | None = None
        self.owned = kind == "started"
        self.kernel_info: dict[str, Any] = {}
        self.execution_state = "unknown"
        self.last_outcome: ExecutionOutcome | None = None
        self._manager: Any = None  # AsyncKernelManager of a started kernel
        self._api: JupyterServerAPI | None = None  # the Jupyter Server of a remote kernel
        self._channels: KernelChannels | None = None
        self._waiters: dict[str, Inbox] = {}
        self._execute_lock = asyncio.Lock()
        self._subshell_id: str | None = None
        self._subshell_lock = asyncio.Lock()
        self._pid: int | None = None
        self._closed = False
        self._died = False
        self._background: set[asyncio.Future[Any]] = set()
        self._draining: asyncio.Future[None] | None = None
        self._launch_args: tuple[str | Path | None, list[str] | None] = (None, None)
        self._link = KernelLink(
            send=self._send,
            forget=self._forget,
            is_alive=self.is_alive,
            interrupt=self._interrupt_quietly,
            mark_dead=self._mark_dead,
        )

    # -------------------------------------------------------------- constructors

    @classmethod
    async def start(
        cls,
        kernel_name: str = "python3",
        *,
        cwd: str | Path | None = None,
        extra_arguments: list[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> KernelSession:
        """Start a new kernel; it is shut down by :meth:`shutdown`."""
        self = await cls.launch(kernel_name, cwd=cwd, extra_arguments=extra_arguments)
        await self.connect(ready_timeout)
        return self

    @classmethod
    async def launch(
        cls,
        kernel_name: str = "python3",
        *,
        cwd: str | Path | None = None,
        extra_arguments: list[str] | None = None,
    ) -> KernelSession:
        """Start the kernel process only; :meth:`connect` finishes. Lets the kernel boot while the caller
        does other slow things (imports)."""
        warm_imports()
        self = cls("started")
        self.kernel_name = kernel_name
        self._launch_args = (cwd, extra_arguments)
        await self._launch()
        return self

    async def _launch(self) -> None:
        cwd, extra_arguments = self._launch_args
        self._manager = await launch_kernel(self.kernel_name, cwd=cwd, extra_arguments=extra_arguments)
        self.kernel_id = self._manager.kernel_id
        self.connection_file = self._manager.connection_file
        self._pid = getattr(process_of(self._manager), "pid", None)

    async def connect(self, ready_timeout: float = READY_TIMEOUT) -> None:
        """Open the channels of a :meth:`launch`-ed kernel and wait until it answers.

        A kernel that dies during start-up is launched again (up to ``START_ATTEMPTS`` times): jupyter_client
        picks free TCP ports and hands them to the kernel, and another process on the machine can bind one
        in between -- the kernel then exits with "Address already in use". A new launch picks new ports.
        """
        if self._channels is not None:
            return
        for attempt in range(1, START_ATTEMPTS + 1):
            self._channels = ZMQChannels(self._manager.client(), heartbeat=False)
            try:
                await self._channels.start(self._dispatch)
                await self._wait_ready(ready_timeout)
                await imports_ready()
                return
            except KernelDeadError:
                if attempt == START_ATTEMPTS:
                    await self.shutdown()
                    raise
            except BaseException:
                with anyio.CancelScope(shield=True):  # cancelled too: the kernel we started must not outlive us
                    await self.shutdown()
                raise
            await self._channels.close()
            with contextlib.suppress(Exception):  # it is dead: this cleans up its files and ports
                await self._manager.shutdown_kernel(now=True)
            try:
                await self._launch()
            except BaseException:
                self._channels = None
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
                raise

    @classmethod
    async def attach(cls, connection_file: str | Path | None = None, *, ready_timeout: float = 10.0) -> KernelSession:
        """Attach to a running kernel by connection file (default: the newest in the runtime dir)."""
        warm_imports()
        self = cls("attached")
        client, path = attached_client(connection_file)
        self.connection_file = path
        stem = Path(path).stem
        self.kernel_id = stem[len("kernel-") :] if stem.startswith("kernel-") else stem
        self.kernel_name = getattr(client, "kernel_name", "") or "python3"
        self._channels = ZMQChannels(client, heartbeat=True)
        await self._channels.start(self._dispatch)
        try:
            await self._wait_ready(ready_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._channels.close()
            raise
        await self._learn_pid()
        await imports_ready()
        return self

    @classmethod
    async def remote(
        cls,
        server_url: str,
        token: str | None = None,
        *,
        kernel_name: str = "python3",
        kernel_id: str | None = None,
        newest: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        kernel_env: dict[str, str] | None = None,
    ) -> KernelSession:
        """A kernel behind a Jupyter Server (also JupyterHub single-user servers, Kernel/Enterprise Gateway).
        ``kernel_env``: ``KERNEL_*`` variables sent with a start request (see :meth:`JupyterServerAPI.start_kernel`).

        Starts a new kernel there (shut down by :meth:`shutdown`), or attaches to ``kernel_id`` (or the
        most recently active kernel with ``newest=True``), which is then never shut down by us.
        """
        warm_imports()
        self = cls("remote")
        api = self._api = JupyterServerAPI(server_url, token)
        self.server_url = api.base
        try:
            if kernel_id is None and newest:
                kernel_id = await api.newest_kernel_id()
            if kernel_id is None:
                model = await api.start_kernel(kernel_name, kernel_env)
                self.owned = True
            else:
                model = await api.kernel_model(kernel_id)
            self.kernel_id = model["id"]
            self.kernel_name = model.get("name", kernel_name)
            self._channels = WebSocketChannels(api.channels_url(model["id"]), api.headers)
            await self._channels.start(self._dispatch)
            await self._wait_ready(ready_timeout)
            await imports_ready()
        except BaseException:
            with anyio.CancelScope(shield=True):  # a kernel started there must not outlive a cancelled start
                await self.shutdown()
            raise
        return self

    # -------------------------------------------------------------- liveness

    async def is_alive(self) -> bool:
        """Whether the kernel process is still there (cheap: no round trip for local kernels)."""
        if self._closed:
            return False
        if self.kind == "started":
            return bool(await self._manager.is_alive())
        if self._died:
            return False
        if self._pid is not None:
            return pid_alive(self._pid)
        assert self._channels is not None
        return self._channels.heartbeat_ok()

    async def _learn_pid(self) -> None:
        """An attached kernel's pid, if it runs on this machine (for instant death detection)."""
        try:
            outcome = await self.execute(
                "",
                silent=True,
                store_history=False,
                user_expressions={
                    "pid": "__import__('os').getpid()",
                    "host": "__import__('socket').gethostname()",
                },
                timeout=5,
                lock=False,
                # Through a subshell where there is one: the human's kernel may be running a long cell.
                subshell=self.supports_subshells,
                interrupt=False,
            )
            values = outcome.user_expressions
            pid = int(values["pid"]["data"]["text/plain"])
            host = values["host"]["data"]["text/plain"].strip("'\"")
            if host == socket.gethostname() and pid_alive(pid):
                self._pid = pid
        except Exception:
            self._pid = None

    @property
    def pid(self) -> int | None:
        """The kernel's process id, when known (started kernels; attached kernels on this host)."""
        if self.kind == "started" and self._manager is not None:
            return getattr(process_of(self._manager), "pid", self._pid)
        return self._pid

    @property
    def supports_subshells(self) -> bool:
        return "kernel subshells" in (self.kernel_info.get("supported_features") or [])

    @property
    def busy(self) -> bool:
        return self._execute_lock.locked() or self.execution_state == "busy"

    def describe(self) -> dict[str, Any]:
        """Which kernel this is, for tool results."""
        info: dict[str, Any] = {"id": self.kernel_id, "name": self.kernel_name, "mode": self.kind}
        if self.connection_file:
            info["connection_file"] = self.connection_file
        if self.server_url:
            info["server"] = self.server_url
        if self.pid is not None:
            info["pid"] = self.pid
        language = (self.kernel_info.get("language_info") or {}).get("name")
        if language:
            info["language"] = language
        return info

    @property
    def language_info(self) -> dict[str, Any]:
        return dict(self.kernel_info.get("language_info") or {"name": "python"})

    def _mark_dead(self, outcome: ExecutionOutcome) -> None:
        self._died = True
        outcome.status = "dead"
        outcome.message = self.dead_message()

    def dead_message(self) -> str:
        code = getattr(process_of(self._manager), "returncode", None) if self.kind == "started" else None
        how = f" (exit code {code})" if code is not None else ""
        if self.kind == "attached":
            fix = "restart it from its notebook (it is not ours to restart)"
            where = f" (connection file {self.connection_file})" if self.connection_file else ""
        else:
            fix = "call restart() to start a fresh one (all variables are lost)"
            where = ""
        return f"The kernel {self.kernel_id}{where} died{how}; {fix}."

    # -------------------------------------------------------------- control

    async def server_kernelspecs(self) -> dict[str, Any]:
        """The kernelspecs of the Jupyter Server of a remote kernel (``GET /api/kernelspecs``: name -> model)."""
        if self._api is None:
            raise KernelSessionError("this kernel is not behind a Jupyter Server")
        return dict((await self._api.request("GET", "api/kernelspecs")).json().get("kernelspecs") or {})

    async def restart(self, *, timeout: float = READY_TIMEOUT, kernel_name: str | None = None) -> None:
        """Restart the kernel (a fresh process, all state lost) and wait until it is ready; with ``kernel_name``
        (a kernel nbmcp started), the fresh process is of that kernelspec."""
        if kernel_name is not None and kernel_name != self.kernel_name:
            await self._switch(kernel_name, timeout)
            return
        if self.kind == "attached":
            raise KernelSessionError(
                f"kernel {self.kernel_id} is attached (not started by nbmcp): restart it from its owner"
            )
        self._subshell_id = None
        self._end_requests_in_flight()
        if self.kind == "started":
            alive = await self._manager.is_alive()
            await self._manager.restart_kernel(now=not alive)
            self._pid = getattr(process_of(self._manager), "pid", None)
        elif self._api is not None and self.kernel_id is not None:
            await self._api.restart(self.kernel_id, timeout)
        self._died = False
        self.execution_state = "starting"
        await self._wait_ready(timeout)

    def _end_requests_in_flight(self) -> None:
        """Requests in flight were the old process's: they end now as dead (their liveness checks would pass
        on a new process, and a background execute without a timeout would wait, holding the lock, forever)."""
        ending = {"header": {"msg_type": "status"}, "parent_header": {}, "content": {"execution_state": "restarting"}}
        for waiting in list(self._waiters.values()):
            waiting.put_nowait(("iopub", ending))

    async def _switch(self, kernel_name: str, timeout: float) -> None:
        """Replace a started kernel by a new one of the kernelspec ``kernel_name``."""
        if self.kind != "started" or self._channels is None:
            raise KernelSessionError("only a kernel nbmcp started can be replaced by another kernelspec")
        self._end_requests_in_flight()
        await self._channels.close()
        self._channels = None
        with contextlib.suppress(Exception):
            await self._manager.shutdown_kernel(now=True)
        self.kernel_name = kernel_name
        self._subshell_id = None
        self.kernel_info = {}
        self._died = False
        self.execution_state = "starting"
        await self._launch()
        await self.connect(timeout)

    async def shutdown(self) -> None:
        """Stop talking to the kernel; shut it down only if nbmcp started it."""
        if self._closed:
            return
        self._closed = True
        draining = list(self._background)  # a cell whose caller went away, still read to its end: not any more
        for future in draining:
            future.cancel()
        await asyncio.gather(*draining, return_exceptions=True)
        if self._channels is not None:
            await self._channels.close()
        try:
            if self.kind == "started" and self._manager is not None:
                with contextlib.suppress(Exception):
                    await self._manager.shutdown_kernel(now=not await self._manager.is_alive())
            elif self._api is not None and self.owned and self.kernel_id:
                with contextlib.suppress(Exception):
                    await self._api.delete(self.kernel_id)
        finally:
            if self._api is not None:
                with contextlib.suppress(Exception):
                    await self._api.aclose()

    async def __aenter__(self) -> KernelSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
