"""One Jupyter kernel, driven over the Jupyter messaging protocol.

``KernelSession`` starts a kernel (jupyter_client ``AsyncKernelManager``), attaches to a running one by
its connection file, or drives a kernel behind a Jupyter Server through its REST + WebSocket API
(:mod:`.connect`). All three share one message router: a reader task per channel (:mod:`.channels`) hands
every message to the request that caused it (``parent_header.msg_id``), so an ``execute`` awaits its own
iopub messages directly (:mod:`.execution`) -- no polling on the hot path. Kernel death is checked only
while waiting and only every ``LIVENESS_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any, Literal

from ..discovery import pid_alive
from ..exceptions import KernelDeadError, KernelSessionError
from .channels import Inbox, KernelChannels, WebSocketChannels, ZMQChannels
from .connect import JupyterServerAPI, attached_client, launch_kernel, newest_connection_file, process_of
from .execution import (
    ExecutionOutcome,
    KernelLink,
    OutputCallback,
    OutputsCallback,
    drain,
    imports_ready,
    run_execute,
    warm_imports,
)

__all__ = [
    "ExecutionOutcome",
    "KernelDeadError",
    "KernelSession",
    "KernelSessionError",
    "newest_connection_file",
]

READY_TIMEOUT = 60.0
START_ATTEMPTS = 3  # launches of a kernel that dies during start-up (see KernelSession.connect)


class KernelSession:
    """One kernel: started (owned), attached (never shut down by us) or remote (Jupyter Server).

    Use the async constructors :meth:`start`, :meth:`attach` and :meth:`remote`.
    """

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
                await self.shutdown()
                raise
            await self._channels.close()
            with contextlib.suppress(Exception):  # it is dead: this cleans up its files and ports
                await self._manager.shutdown_kernel(now=True)
            try:
                await self._launch()
            except BaseException:
                self._channels = None
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
            await self.shutdown()
            raise
        return self

    # -------------------------------------------------------------- routing

    def _dispatch(self, channel: str, msg: dict[str, Any]) -> None:
        parent = (msg.get("parent_header") or {}).get("msg_id")
        inbox = self._waiters.get(parent) if parent else None
        if channel == "iopub" and msg["header"].get("msg_type") == "status":
            state = msg["content"].get("execution_state")
            if state in ("restarting", "dead"):  # every waiting request learns it at once
                self._died = True
                for waiting in list(self._waiters.values()):
                    waiting.put_nowait((channel, msg))
                return
            if (msg.get("parent_header") or {}).get("subshell_id") is None:
                self.execution_state = state
        if inbox is not None:
            inbox.put_nowait((channel, msg))

    def _new_msg(self, msg_type: str, content: dict[str, Any], subshell_id: str | None = None) -> dict[str, Any]:
        assert self._channels is not None
        msg = self._channels.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        return msg

    def _send(self, channel: str, msg: dict[str, Any]) -> Inbox:
        if self._channels is None or self._closed:
            raise KernelSessionError("the kernel session is closed")
        inbox = self._receive(msg["header"]["msg_id"])
        self._channels.send(channel, msg)
        return inbox

    def _receive(self, msg_id: str) -> Inbox:
        """Route the replies to ``msg_id`` to a new inbox."""
        inbox = self._waiters[msg_id] = Inbox()
        return inbox

    def _forget(self, msg_id: str) -> None:
        self._waiters.pop(msg_id, None)

    async def _request(self, channel: str, msg_type: str, content: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and await its reply on the same channel."""
        msg = self._new_msg(msg_type, content)
        msg_id = msg["header"]["msg_id"]
        inbox = self._send(channel, msg)
        try:
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {msg_type.replace('_request', '_reply')} within {timeout:g} s")
                try:
                    ch, reply = await inbox.get(remaining)
                except asyncio.TimeoutError:
                    continue
                if ch == channel:
                    return reply
        finally:
            self._forget(msg_id)

    async def _wait_ready(self, timeout: float) -> None:
        """Kernel answers on shell *and* its iopub reaches us (ZMQ SUB sockets join late).

        Like ``KernelClient.wait_for_ready`` but through our router (reading the channels ourselves
        would make ``wait_for_ready`` hang): resend ``kernel_info_request`` until one of them shows
        up on both channels.
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            if self.kind == "started" and not await self._manager.is_alive():
                raise KernelDeadError(f"kernel {self.kernel_name!r} exited during start-up")
            # An attached kernel may be busy with the human's long cell: its shell answers only after that
            # cell, its control channel (ipykernel answers kernel_info there too) at once. Kernels that do
            # not answer on control still get every other attempt on shell.
            channel = "control" if self.kind == "attached" and attempt % 2 == 0 else "shell"
            attempt += 1
            if await self._kernel_info_round(channel, min(deadline, time.monotonic() + 0.5)):
                self._died = False
                return
            if time.monotonic() >= deadline:
                if self.kind == "attached":
                    raise KernelSessionError(
                        f"the kernel of {self.connection_file} did not answer within {timeout:g} s: it may have "
                        "died and left its file behind; pass --existing with the connection file of a running "
                        "kernel (`%connect_info` in its notebook names it), or --existing alone for the newest "
                        "that answers"
                    )
                raise KernelSessionError(f"kernel did not become ready within {timeout:g} s")

    async def _kernel_info_round(self, channel: str, step_end: float) -> bool:
        """One ``kernel_info_request``: whether its reply and an iopub message of it arrived by ``step_end``
        (the kernel may still be starting: wait long for the reply, briefly for iopub after it)."""
        msg = self._new_msg("kernel_info_request", {})
        msg_id = msg["header"]["msg_id"]
        inbox = self._send(channel, msg)
        got_reply = got_iopub = False
        try:
            while not (got_reply and got_iopub):
                remaining = step_end - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    on, reply = await inbox.get(remaining)
                except asyncio.TimeoutError:
                    break
                if on in ("shell", "control"):
                    got_reply = True
                    self.kernel_info = reply["content"]
                    step_end = min(step_end, time.monotonic() + 0.1)
                elif on == "iopub":
                    got_iopub = True
        finally:
            self._forget(msg_id)
        return got_reply and got_iopub

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

    # -------------------------------------------------------------- execution

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        subshell: bool = False,
        lock: bool = True,
        interrupt: bool = True,
        on_outputs: OutputsCallback | None = None,
    ) -> ExecutionOutcome:
        """Run ``code``; await its reply and its iopub messages until the kernel is idle.

        On ``timeout`` the kernel is interrupted and the partial outputs are returned (status
        ``timeout``). If the awaiting task is cancelled, the kernel is interrupted before the
        cancellation propagates. ``on_output(name, text)`` sees stream text as it arrives, ``on_outputs(outputs)``
        the whole output list each time an output (of any kind) arrives or changes.
        ``subshell=True`` runs in a kernel subshell (ipykernel 7) so it does not wait for a running cell.
        ``interrupt=False`` gives up at the timeout without interrupting: an interrupt stops the kernel's
        main thread, that is whatever cell the human is running, so subshell requests never interrupt.
        """
        interrupt = interrupt and not subshell
        if self._closed:
            raise KernelSessionError("the kernel session is closed")
        if not await self.is_alive():
            raise KernelDeadError(self.dead_message())
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": False,
            "stop_on_error": not silent,
        }
        subshell_id = await self._get_subshell() if subshell else None
        run = self._execute(content, subshell_id, timeout, on_output, interrupt, on_outputs)
        if lock and not subshell:
            async with self._execute_lock:
                return await run
        return await run

    async def _execute(
        self,
        content: dict[str, Any],
        subshell_id: str | None,
        timeout: float | None,
        on_output: OutputCallback | None,
        interrupt: bool,
        on_outputs: OutputsCallback | None = None,
    ) -> ExecutionOutcome:
        if subshell_id is None and self._draining is not None and not self._draining.done():
            # a cell sent before the cancelled one has stopped would be aborted (stop_on_error) when it raises
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._draining)
        msg = self._new_msg("execute_request", content, subshell_id)
        outcome = self.last_outcome = ExecutionOutcome()
        try:
            return await run_execute(
                self._link,
                msg,
                outcome,
                timeout=timeout,
                on_output=on_output,
                interrupt=interrupt,
                on_outputs=on_outputs,
            )
        except asyncio.CancelledError:
            # the caller went away (MCP notifications/cancelled, client disconnect): stop the cell, and
            # hold the next execute back until it has stopped
            self._start_draining(msg["header"]["msg_id"])
            outcome.status = "cancelled"
            outcome.message = "cancelled by the client: the kernel was interrupted, its state is kept"
            raise

    def _start_draining(self, msg_id: str) -> None:
        self._draining = asyncio.ensure_future(drain(self._link, msg_id, self._receive(msg_id)))
        self._background.add(self._draining)
        self._draining.add_done_callback(self._background.discard)

    # -------------------------------------------------------------- control

    async def _interrupt_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.interrupt()

    async def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT for our kernels, REST or ``interrupt_request`` otherwise)."""
        if self.kind == "started":
            await self._manager.interrupt_kernel()
        elif self._api is not None and self.kernel_id is not None:
            await self._api.interrupt(self.kernel_id)
        else:
            await self._request("control", "interrupt_request", {}, timeout=5)

    async def restart(self, *, timeout: float = READY_TIMEOUT) -> None:
        """Restart the kernel (a fresh process, all state lost) and wait until it is ready."""
        if self.kind == "attached":
            raise KernelSessionError(
                f"kernel {self.kernel_id} is attached (not started by nbmcp): restart it from its owner"
            )
        self._subshell_id = None
        if self.kind == "started":
            alive = await self._manager.is_alive()
            await self._manager.restart_kernel(now=not alive)
            self._pid = getattr(process_of(self._manager), "pid", None)
        elif self._api is not None and self.kernel_id is not None:
            await self._api.restart(self.kernel_id, timeout)
        self._died = False
        self.execution_state = "starting"
        await self._wait_ready(timeout)

    async def _get_subshell(self) -> str | None:
        """The id of our inspection subshell, created on first use; None when unsupported."""
        if not self.supports_subshells:
            return None
        async with self._subshell_lock:
            if self._subshell_id is None:
                try:
                    reply = await self._request("control", "create_subshell_request", {}, timeout=5)
                except (TimeoutError, KernelSessionError):
                    return None
                self._subshell_id = reply["content"].get("subshell_id")
            return self._subshell_id

    async def shutdown(self) -> None:
        """Stop talking to the kernel; shut it down only if nbmcp started it."""
        if self._closed:
            return
        self._closed = True
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
