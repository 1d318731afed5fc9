"""One Jupyter kernel, driven over the Jupyter messaging protocol.

``KernelSession`` starts a kernel (jupyter_client ``AsyncKernelManager``), attaches to a running one by
its connection file, or drives a kernel behind a Jupyter Server through its REST + WebSocket API. All
three share one message router: a reader task per channel hands every message to the request that caused
it (``parent_header.msg_id``), so an ``execute`` awaits its own iopub messages directly -- no polling on
the hot path. Kernel death is checked only while waiting and only every ``_LIVENESS_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import glob
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..discovery import pid_alive
from ..exceptions import KernelDeadError, KernelSessionError

__all__ = [
    "ExecutionOutcome",
    "KernelDeadError",
    "KernelSession",
    "KernelSessionError",
    "newest_connection_file",
]

Status = Literal["ok", "error", "aborted", "timeout", "cancelled", "dead"]
OutputCallback = Callable[[str, str], Awaitable[None] | None]

_LIVENESS_INTERVAL = 0.25  # seconds between liveness checks while waiting for a busy kernel
_INTERRUPT_GRACE = 5.0  # seconds to wait for the kernel to go idle after an interrupt
_READY_TIMEOUT = 60.0
_IDLE_GRACE = 2.0  # seconds of iopub silence after the reply before giving up on the 'idle' status


@dataclass
class ExecutionOutcome:
    """What one ``execute_request`` produced.

    ``outputs`` are nbformat v4 output dicts (``nbformat.v4.output_from_msg``), in the order the kernel
    sent them, with ``clear_output`` and ``update_display_data`` applied as a notebook would.
    ``status`` is ``ok`` | ``error`` | ``aborted`` | ``timeout`` (interrupted at the deadline; outputs are
    partial) | ``cancelled`` (the caller went away; the kernel was interrupted) | ``dead`` (the kernel
    died while running the code).
    """

    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    status: Status = "ok"
    duration: float = 0.0
    timed_out: bool = False
    message: str | None = None
    error: dict[str, Any] | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)


_warming: Any = None  # the thread importing nbformat


def _warm_imports() -> None:
    """Import nbformat on a thread while the kernel boots: its import (jsonschema) takes from 0.2 s to
    over a second, and would otherwise stall the event loop at the first output."""
    global _warming
    if _warming is not None or "nbformat.v4" in sys.modules:
        return
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):
            import nbformat.v4  # noqa: F401

    _warming = threading.Thread(target=load, name="nbmcp-warm-imports", daemon=True)
    _warming.start()


async def _imports_ready() -> None:
    """Wait (off the event loop) for :func:`_warm_imports`, so no execution stalls on it later."""
    if _warming is not None and _warming.is_alive():
        await asyncio.to_thread(_warming.join)


def newest_connection_file(runtime_dir: str | None = None) -> str:
    """The most recently modified ``kernel-*.json`` in the Jupyter runtime dir."""
    from jupyter_core.paths import jupyter_runtime_dir

    where = runtime_dir or jupyter_runtime_dir()
    files = glob.glob(os.path.join(where, "kernel-*.json"))
    if not files:
        raise KernelSessionError(f"no kernel connection file (kernel-*.json) in {where}")
    return max(files, key=os.path.getmtime)


# --------------------------------------------------------------------------------------------------
# transports: how messages get to and from the kernel
# --------------------------------------------------------------------------------------------------

Dispatch = Callable[[str, dict[str, Any]], None]


class _ZMQTransport:
    """Channels of a jupyter_client ``AsyncKernelClient`` (local or attached kernel)."""

    def __init__(self, client: Any, *, heartbeat: bool) -> None:
        self.client = client
        self.session = client.session
        self._heartbeat = heartbeat
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def start(self, dispatch: Dispatch) -> None:
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=self._heartbeat, control=True)
        if self._heartbeat:
            self.client.hb_channel.time_to_dead = 0.5
        for name in ("shell", "iopub", "control"):
            channel = getattr(self.client, f"{name}_channel")
            self._tasks.append(asyncio.create_task(self._read(name, channel, dispatch)))

    async def _read(self, name: str, channel: Any, dispatch: Dispatch) -> None:
        # one await per message (``get_msg`` polls, then receives)
        recv = getattr(channel, "_recv", None) or (lambda: channel.get_msg(timeout=None))
        while not self.closed:
            try:
                msg = await recv()
            except asyncio.CancelledError:
                raise
            except Exception:  # socket closed, bad signature, ...
                if self.closed:
                    return
                await asyncio.sleep(0.01)
                continue
            dispatch(name, msg)

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        getattr(self.client, f"{channel}_channel").send(msg)

    def heartbeat_ok(self) -> bool:
        return not self._heartbeat or self.client.hb_channel.is_beating()

    async def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            self.client.stop_channels()


class _WebSocketTransport:
    """The Jupyter Server kernel WebSocket (``/api/kernels/{id}/channels``), JSON message protocol."""

    def __init__(self, ws_url: str, headers: dict[str, str]) -> None:
        from jupyter_client.session import Session

        self.ws_url = ws_url
        self.headers = headers
        self.session = Session(key=b"", username="nbmcp")
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.disconnected = False

    async def start(self, dispatch: Dispatch) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"{self.ws_url}?session_id={self.session.session}"
        request = HTTPRequest(url, headers=self.headers, connect_timeout=20, request_timeout=20)
        self._ws = await websocket_connect(request, max_message_size=1 << 30)
        self._task = asyncio.create_task(self._read(dispatch))

    async def _read(self, dispatch: Dispatch) -> None:
        while True:
            raw = await self._ws.read_message()
            if raw is None:
                self.disconnected = True
                if not self.closed:
                    dispatch("iopub", _synthetic_status("dead"))
                return
            if isinstance(raw, bytes):  # binary frames carry buffers; we only need the JSON part
                continue
            msg = json.loads(raw)
            dispatch(msg.pop("channel", "iopub"), msg)

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        from jupyter_client.jsonutil import json_default

        payload = {
            "header": msg["header"],
            "parent_header": msg.get("parent_header") or {},
            "metadata": msg.get("metadata") or {},
            "content": msg.get("content") or {},
            "channel": channel,
            "buffers": [],
        }
        self._ws.write_message(json.dumps(payload, default=json_default))

    def heartbeat_ok(self) -> bool:
        return not self.disconnected

    async def close(self) -> None:
        self.closed = True
        if self._ws is not None:
            self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _synthetic_status(state: str) -> dict[str, Any]:
    return {
        "header": {"msg_type": "status", "msg_id": uuid.uuid4().hex},
        "parent_header": {},
        "metadata": {},
        "content": {"execution_state": state},
    }


class _Inbox:
    """Messages for one request. Cheaper than ``asyncio.wait_for(queue.get(), t)`` on the hot path:
    no task per message, just a future woken by the router or by a timer."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: tuple[str, dict[str, Any]]) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float) -> tuple[str, dict[str, Any]]:
        """The next message; ``asyncio.TimeoutError`` if none arrives within ``timeout`` seconds."""
        if self.items:
            return self.items.popleft()
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(max(timeout, 0.0), _wake, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            timer.cancel()
        if self.items:
            return self.items.popleft()
        raise asyncio.TimeoutError


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# --------------------------------------------------------------------------------------------------
# the session
# --------------------------------------------------------------------------------------------------


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
        self._manager: Any = None
        self._transport: _ZMQTransport | _WebSocketTransport | None = None
        self._waiters: dict[str, _Inbox] = {}
        self._execute_lock = asyncio.Lock()
        self._subshell_id: str | None = None
        self._subshell_lock = asyncio.Lock()
        self._pid: int | None = None
        self._http: Any = None  # httpx.AsyncClient for remote kernels
        self._kernel_url: str | None = None
        self._closed = False
        self._died = False
        self._background: set[asyncio.Future[Any]] = set()
        self.last_outcome: ExecutionOutcome | None = None
        self._draining: asyncio.Future[None] | None = None

    # -------------------------------------------------------------- constructors

    @classmethod
    async def start(
        cls,
        kernel_name: str = "python3",
        *,
        cwd: str | Path | None = None,
        extra_arguments: list[str] | None = None,
        ready_timeout: float = _READY_TIMEOUT,
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
        from jupyter_client.manager import AsyncKernelManager

        _warm_imports()
        self = cls("started")
        self.kernel_name = kernel_name
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
        self._manager = km
        self.kernel_id = km.kernel_id
        self.connection_file = km.connection_file
        process = getattr(getattr(km, "provisioner", None), "process", None)
        self._pid = getattr(process, "pid", None)
        return self

    async def connect(self, ready_timeout: float = _READY_TIMEOUT) -> None:
        """Open the channels of a :meth:`launch`-ed kernel and wait until it answers."""
        if self._transport is not None:
            return
        self._transport = _ZMQTransport(self._manager.client(), heartbeat=False)
        try:
            await self._transport.start(self._dispatch)
            await self._wait_ready(ready_timeout)
            await _imports_ready()
        except BaseException:
            await self.shutdown()
            raise

    @classmethod
    async def attach(cls, connection_file: str | Path | None = None, *, ready_timeout: float = 10.0) -> KernelSession:
        """Attach to a running kernel by connection file (default: the newest in the runtime dir)."""
        from jupyter_client.asynchronous import AsyncKernelClient
        from jupyter_client.connect import find_connection_file

        _warm_imports()
        self = cls("attached")
        if connection_file is None:
            path = newest_connection_file()
        else:
            try:
                path = find_connection_file(str(connection_file))
            except OSError as exc:
                raise KernelSessionError(f"no kernel connection file {str(connection_file)!r}") from exc
        self.connection_file = path
        stem = Path(path).stem
        self.kernel_id = stem[len("kernel-") :] if stem.startswith("kernel-") else stem
        kc = AsyncKernelClient(connection_file=path)
        try:
            kc.load_connection_file()
        except Exception as exc:
            raise KernelSessionError(f"cannot read connection file {path}: {exc}") from exc
        self.kernel_name = getattr(kc, "kernel_name", "") or "python3"
        self._transport = _ZMQTransport(kc, heartbeat=True)
        await self._transport.start(self._dispatch)
        try:
            await self._wait_ready(ready_timeout)
        except BaseException:
            await self._transport.close()
            raise
        await self._learn_pid()
        await _imports_ready()
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
        ready_timeout: float = _READY_TIMEOUT,
    ) -> KernelSession:
        """A kernel behind a Jupyter Server (also JupyterHub single-user servers, Kernel/Enterprise Gateway).

        Starts a new kernel there (shut down by :meth:`shutdown`), or attaches to ``kernel_id`` (or the
        most recently active kernel with ``newest=True``), which is then never shut down by us.
        """
        import httpx

        _warm_imports()
        self = cls("remote")
        base = server_url.rstrip("/") + "/"
        self.server_url = base
        headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0)
        try:
            if kernel_id is None and newest:
                kernels = (await self._rest("GET", "api/kernels")).json()
                if not kernels:
                    raise KernelSessionError(f"no running kernels on {base}")
                kernels.sort(key=lambda k: k.get("last_activity") or "")
                kernel_id = kernels[-1]["id"]
            if kernel_id is None:
                model = (await self._rest("POST", "api/kernels", json={"name": kernel_name})).json()
                self.owned = True
            else:
                model = (await self._rest("GET", f"api/kernels/{kernel_id}")).json()
            self.kernel_id = model["id"]
            self.kernel_name = model.get("name", kernel_name)
            self._kernel_url = f"api/kernels/{self.kernel_id}"
            ws_base = "ws" + base[len("http") :] if base.startswith("http") else base
            self._transport = _WebSocketTransport(f"{ws_base}api/kernels/{self.kernel_id}/channels", headers)
            await self._transport.start(self._dispatch)
            await self._wait_ready(ready_timeout)
            await _imports_ready()
        except BaseException:
            await self.shutdown()
            raise
        return self

    async def _rest(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KernelSessionError(f"Jupyter Server {self.server_url} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise KernelSessionError(
                f"Jupyter Server {self.server_url} answered {response.status_code} to {method} /{path}"
                + (" (check --server-token)" if response.status_code in (401, 403) else "")
            )
        return response

    # -------------------------------------------------------------- routing

    def _dispatch(self, channel: str, msg: dict[str, Any]) -> None:
        parent = (msg.get("parent_header") or {}).get("msg_id")
        queue = self._waiters.get(parent) if parent else None
        if channel == "iopub" and msg["header"].get("msg_type") == "status":
            state = msg["content"].get("execution_state")
            if state in ("restarting", "dead"):
                self._died = True
                for q in list(self._waiters.values()):
                    q.put_nowait((channel, msg))
                return
            if (msg.get("parent_header") or {}).get("subshell_id") is None:
                self.execution_state = state
        if queue is not None:
            queue.put_nowait((channel, msg))

    def _new_msg(self, msg_type: str, content: dict[str, Any], subshell_id: str | None = None) -> dict[str, Any]:
        assert self._transport is not None
        msg = self._transport.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        return msg

    def _send(self, channel: str, msg: dict[str, Any]) -> _Inbox:
        if self._transport is None or self._closed:
            raise KernelSessionError("the kernel session is closed")
        queue = _Inbox()
        self._waiters[msg["header"]["msg_id"]] = queue
        self._transport.send(channel, msg)
        return queue

    async def _request(self, channel: str, msg_type: str, content: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and await its reply on the same channel."""
        msg = self._new_msg(msg_type, content)
        msg_id = msg["header"]["msg_id"]
        queue = self._send(channel, msg)
        try:
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {msg_type.replace('_request', '_reply')} within {timeout:g} s")
                try:
                    ch, reply = await queue.get(remaining)
                except asyncio.TimeoutError:
                    continue
                if ch == channel:
                    return reply
        finally:
            self._waiters.pop(msg_id, None)

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
            msg = self._new_msg("kernel_info_request", {})
            msg_id = msg["header"]["msg_id"]
            # An attached kernel may be busy with the human's long cell: its shell answers only after that
            # cell, its control channel (ipykernel answers kernel_info there too) at once. Kernels that do
            # not answer on control still get every other attempt on shell.
            channel_name = "control" if self.kind == "attached" and attempt % 2 == 0 else "shell"
            attempt += 1
            queue = self._send(channel_name, msg)
            got_reply = got_iopub = False
            try:
                # the kernel may still be starting: wait long for the reply, briefly for iopub after it
                step_end = min(deadline, time.monotonic() + 0.5)
                while not (got_reply and got_iopub):
                    remaining = step_end - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        channel, reply = await queue.get(remaining)
                    except asyncio.TimeoutError:
                        break
                    if channel in ("shell", "control"):
                        got_reply = True
                        self.kernel_info = reply["content"]
                        step_end = min(step_end, time.monotonic() + 0.1)
                    elif channel == "iopub":
                        got_iopub = True
            finally:
                self._waiters.pop(msg_id, None)
            if got_reply and got_iopub:
                self._died = False
                return
            if time.monotonic() >= deadline:
                raise KernelSessionError(f"kernel did not become ready within {timeout:g} s")

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
        assert self._transport is not None
        return self._transport.heartbeat_ok()

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
            import socket

            if host == socket.gethostname() and pid_alive(pid):
                self._pid = pid
        except Exception:
            self._pid = None

    @property
    def pid(self) -> int | None:
        """The kernel's process id, when known (started kernels; attached kernels on this host)."""
        if self.kind == "started" and self._manager is not None:
            process = getattr(getattr(self._manager, "provisioner", None), "process", None)
            return getattr(process, "pid", self._pid)
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
    ) -> ExecutionOutcome:
        """Run ``code``; await its reply and its iopub messages until the kernel is idle.

        On ``timeout`` the kernel is interrupted and the partial outputs are returned (status
        ``timeout``). If the awaiting task is cancelled, the kernel is interrupted before the
        cancellation propagates. ``on_output(name, text)`` sees stream text as it arrives.
        ``subshell=True`` runs in a kernel subshell (ipykernel 7) so it does not wait for a running cell.
        ``interrupt=False`` gives up at the timeout without interrupting: an interrupt stops the kernel's
        main thread, that is whatever cell the human is running, so subshell requests never interrupt.
        """
        interrupt = interrupt and not subshell
        if self._closed:
            raise KernelSessionError("the kernel session is closed")
        if not await self.is_alive():
            raise KernelDeadError(self.dead_message())
        subshell_id = await self._get_subshell() if subshell else None
        if lock and not subshell:
            async with self._execute_lock:
                return await self._execute(
                    code, timeout, on_output, silent, store_history, user_expressions, subshell_id, interrupt
                )
        return await self._execute(
            code, timeout, on_output, silent, store_history, user_expressions, subshell_id, interrupt
        )

    async def _execute(
        self,
        code: str,
        timeout: float | None,
        on_output: OutputCallback | None,
        silent: bool,
        store_history: bool,
        user_expressions: dict[str, str] | None,
        subshell_id: str | None,
        interrupt: bool = True,
    ) -> ExecutionOutcome:
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": False,
            "stop_on_error": not silent,
        }
        if subshell_id is None and self._draining is not None and not self._draining.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._draining)
        msg = self._new_msg("execute_request", content, subshell_id)
        msg_id = msg["header"]["msg_id"]
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        outcome = ExecutionOutcome()
        self.last_outcome = outcome
        collector = _OutputCollector(outcome)
        queue = self._send("shell", msg)
        got_reply = got_idle = False
        running = False  # the kernel has started on this request (not still finishing someone else's cell)
        interrupted_at: float | None = None
        last_heard = started
        try:
            while not (got_reply and got_idle):
                now = time.monotonic()
                wait = _LIVENESS_INTERVAL
                if got_reply and now - last_heard > _IDLE_GRACE:
                    break  # replied, but no 'idle' on iopub (a kernel that never sends it): don't hang
                if deadline is not None and interrupted_at is None:
                    if now >= deadline:
                        interrupted_at = now
                        outcome.timed_out = True
                        if not interrupt:
                            outcome.status = "timeout"
                            outcome.message = f"no answer within {timeout:g} s (the kernel was not interrupted)"
                            break
                        if not running:
                            # An interrupt now would stop a cell that is not ours (the human's, in an
                            # attached kernel). Ours stays queued and runs after it.
                            outcome.status = "timeout"
                            outcome.message = (
                                f"the kernel was busy with another cell for all {timeout:g} s, so it was not "
                                "interrupted; this code is queued and runs when that cell ends "
                                "(interrupt() stops the running cell)"
                            )
                            break
                        await self._interrupt_quietly()
                        continue
                    wait = min(wait, deadline - now)
                if interrupted_at is not None and now - interrupted_at > _INTERRUPT_GRACE:
                    outcome.status = "timeout"
                    outcome.message = (
                        f"timed out after {timeout:g} s; the kernel did not stop within "
                        f"{_INTERRUPT_GRACE:g} s of the interrupt "
                        "(it may still be busy: interrupt() or restart())"
                    )
                    break
                try:
                    channel, reply = await queue.get(wait)
                except asyncio.TimeoutError:
                    if not await self.is_alive():
                        self._mark_dead(outcome)
                        break
                    continue
                last_heard = time.monotonic()
                msg_type = reply["header"].get("msg_type")
                if channel == "shell" and msg_type == "execute_reply":
                    got_reply = True
                    rc = reply["content"]
                    outcome.execution_count = rc.get("execution_count")
                    outcome.user_expressions = rc.get("user_expressions") or {}
                    if rc.get("status") == "error":
                        outcome.status = "error"
                        outcome.error = {k: rc.get(k) for k in ("ename", "evalue", "traceback")}
                    elif rc.get("status") == "aborted":
                        outcome.status = "aborted"
                elif channel == "iopub":
                    if msg_type == "status":
                        state = reply["content"].get("execution_state")
                        if state == "busy":
                            running = True
                        elif state == "idle":
                            got_idle = True
                        elif state in ("restarting", "dead"):
                            self._mark_dead(outcome)
                            break
                    else:
                        text = collector.add(reply)
                        if text is not None and on_output is not None:
                            res = on_output(reply["content"].get("name", "stdout"), text)
                            if res is not None:
                                await res
        except asyncio.CancelledError:
            # the caller went away (MCP notifications/cancelled, client disconnect): stop the cell
            # interrupt, and hold back the next execute until this cell has stopped: sent earlier, it
            # would be aborted by the kernel (stop_on_error) when the interrupted cell raises
            self._waiters.pop(msg_id, None)
            self._draining = asyncio.ensure_future(self._drain(msg_id))
            self._background.add(self._draining)
            self._draining.add_done_callback(self._background.discard)
            outcome.status = "cancelled"
            outcome.message = "cancelled by the client: the kernel was interrupted, its state is kept"
            raise
        finally:
            self._waiters.pop(msg_id, None)
            outcome.duration = time.monotonic() - started
        if outcome.timed_out and outcome.status not in ("dead",):
            outcome.status = "timeout"
            if outcome.message is None:
                outcome.message = f"timed out after {timeout:g} s: the kernel was interrupted, its state is kept"
        if outcome.execution_count is None:
            outcome.execution_count = collector.execution_count
        return outcome

    async def _drain(self, msg_id: str) -> None:
        """Interrupt the cell ``msg_id`` and wait (bounded) until the kernel has replied to it."""
        queue = _Inbox()
        self._waiters[msg_id] = queue
        try:
            await self._interrupt_quietly()
            deadline = time.monotonic() + _INTERRUPT_GRACE
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    channel, msg = await queue.get(min(remaining, _LIVENESS_INTERVAL))
                except asyncio.TimeoutError:
                    if not await self.is_alive():
                        return
                    continue
                if channel == "shell" and msg["header"].get("msg_type") == "execute_reply":
                    return
        except Exception:
            pass
        finally:
            self._waiters.pop(msg_id, None)

    def _mark_dead(self, outcome: ExecutionOutcome) -> None:
        self._died = True
        outcome.status = "dead"
        outcome.message = self.dead_message()

    def dead_message(self) -> str:
        code = None
        if self.kind == "started":
            process = getattr(getattr(self._manager, "provisioner", None), "process", None)
            code = getattr(process, "returncode", None)
        how = f" (exit code {code})" if code is not None else ""
        if self.kind == "attached":
            fix = "restart it from its notebook (it is not ours to restart)"
        else:
            fix = "call restart() to start a fresh one (all variables are lost)"
        return f"The kernel {self.kernel_id} died{how}; {fix}."

    async def _interrupt_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.interrupt()

    # -------------------------------------------------------------- control

    async def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT for our kernels, REST or ``interrupt_request`` otherwise)."""
        if self.kind == "started":
            await self._manager.interrupt_kernel()
        elif self.kind == "remote":
            await self._rest("POST", f"{self._kernel_url}/interrupt", json={})
        else:
            await self._request("control", "interrupt_request", {}, timeout=5)

    async def restart(self, *, timeout: float = _READY_TIMEOUT) -> None:
        """Restart the kernel (a fresh process, all state lost) and wait until it is ready."""
        if self.kind == "attached":
            raise KernelSessionError(
                f"kernel {self.kernel_id} is attached (not started by nbmcp): restart it from its owner"
            )
        self._subshell_id = None
        if self.kind == "started":
            alive = await self._manager.is_alive()
            await self._manager.restart_kernel(now=not alive)
            process = getattr(getattr(self._manager, "provisioner", None), "process", None)
            self._pid = getattr(process, "pid", None)
        else:
            await self._rest("POST", f"{self._kernel_url}/restart", json={}, timeout=timeout)
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
        if self._transport is not None:
            await self._transport.close()
        try:
            if self.kind == "started" and self._manager is not None:
                with contextlib.suppress(Exception):
                    await self._manager.shutdown_kernel(now=not await self._manager.is_alive())
            elif self.kind == "remote" and self.owned and self.kernel_id and self._http is not None:
                with contextlib.suppress(Exception):
                    await self._http.delete(f"api/kernels/{self.kernel_id}")
        finally:
            if self._http is not None:
                with contextlib.suppress(Exception):
                    await self._http.aclose()

    close = shutdown

    async def __aenter__(self) -> KernelSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


class _OutputCollector:
    """Turns iopub messages into notebook outputs, as a notebook frontend would."""

    def __init__(self, outcome: ExecutionOutcome) -> None:
        self.outcome = outcome
        self.display_ids: dict[str, list[int]] = {}
        self.clear_pending = False
        self.execution_count: int | None = None

    def add(self, msg: dict[str, Any]) -> str | None:
        """Record one iopub message; returns stream text (for live progress) if it was a stream."""
        msg_type = msg["header"].get("msg_type")
        content = msg["content"]
        outputs = self.outcome.outputs
        if msg_type == "execute_input":
            self.execution_count = content.get("execution_count")
            return None
        if msg_type == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                outputs.clear()
                self.display_ids.clear()
            return None
        if msg_type == "update_display_data":
            display_id = (content.get("transient") or {}).get("display_id")
            for index in self.display_ids.get(display_id or "", []):
                if index < len(outputs):
                    outputs[index]["data"] = content.get("data", {})
                    outputs[index]["metadata"] = content.get("metadata", {})
            return None
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return None
        if self.clear_pending:
            outputs.clear()
            self.display_ids.clear()
            self.clear_pending = False
        if msg_type == "stream" and outputs and outputs[-1].get("output_type") == "stream":
            last = outputs[-1]
            if last.get("name") == content.get("name"):
                last["text"] += content.get("text", "")
                return content.get("text", "")
        from nbformat.v4 import output_from_msg  # here: nbformat's import is slow, start-up matters

        output = output_from_msg(msg)
        if msg_type == "error":
            self.outcome.error = {k: content.get(k) for k in ("ename", "evalue", "traceback")}
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self.display_ids.setdefault(display_id, []).append(len(outputs))
        outputs.append(output)
        return content.get("text", "") if msg_type == "stream" else None


def _is_ipykernel(km: Any) -> bool:
    try:
        spec = km.kernel_spec
    except Exception:
        return False
    argv = " ".join(getattr(spec, "argv", []) or [])
    return getattr(spec, "language", "").lower() == "python" and "ipykernel" in argv
