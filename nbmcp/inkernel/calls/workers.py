"""Where the in-kernel server runs code that may block: bounded pools of threads, with timeouts, per-client
limits, a "busy" answer at once when full, and an account of the threads that could not be stopped.

Two pools keep the two kinds of work apart (:class:`~nbmcp.inkernel.server.NbMCPServer` makes them): user tools
and resources in one, the built-in reads (``list_objects``, ``read_rows``, ``describe_object``, the
``nbmcp://objects`` resources) in the other, so no number of stuck user calls can stop a client from reading
the notebook's data.

Python cannot kill a thread. A sync call that times out, or whose client goes away, is *abandoned*: the client
gets its answer at once, the thread runs on. Abandoned threads are counted per tool, a tool with too many is
refused until they end (the error and ``%mcp`` say so), and each is sent an asynchronous
:class:`CallAbandoned` with ``PyThreadState_SetAsyncExc``. That is best effort: CPython delivers it only when
the thread next runs Python bytecode, so a thread blocked in C (``time.sleep``, a socket read, one long NumPy
operation) ends only when that call returns, and user code that catches ``BaseException`` can swallow it. Like a
``KeyboardInterrupt``, it can leave what the tool was changing half changed: the price of getting the thread back.

Threads are reused: starting one makes the server's event loop wait for the new thread to get the GIL, which
under load cost a fifth of the loop's time. A thread waits :data:`IDLE_SECONDS` for its next call and then ends,
so no idle thread outlives the load by more than that. Reuse is safe with asynchronous exceptions: a call leaves
the pool's books under the lock that :meth:`WorkerPool._abandon` takes, and clears an exception sent to it before
its thread takes the next call, so one can only reach the call it was meant for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import itertools
import queue
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ...exceptions import NbMCPError, ToolTimeout
from ...sdk import connection_of
from ..oversight.activity import is_legacy

__all__ = ["CallAbandoned", "PoolStatus", "ToolBusy", "WorkerPool", "client_key_middleware", "current_client_key"]

T = TypeVar("T")

IDLE_SECONDS = 1.0
"""How long a pool's thread waits for another call before it ends."""

current_client_key: contextvars.ContextVar[Hashable] = contextvars.ContextVar("nbmcp_client_key", default=None)
"""Which client a request comes from, for per-client limits: its session in the handshake era, its name and
version in the stateless era (which has no session: same-named clients count as one)."""


class ToolBusy(NbMCPError):
    """A call was refused at once because a limit was reached; the message names the limit and what to do."""


class CallAbandoned(BaseException):
    """Raised by nbmcp inside the thread of a call it abandoned, to make it stop.

    A ``BaseException``, so the usual ``except Exception`` in a tool does not swallow it.
    """


@dataclass(frozen=True)
class PoolStatus:
    """A pool at one moment: calls running, and per tool the abandoned threads still alive."""

    running: int
    abandoned: dict[str, int]
    max_abandoned: int


class _Call:
    __slots__ = ("abandoned", "client", "exc_sent", "id", "key", "thread_id")

    def __init__(self, call_id: int, key: str, client: Hashable) -> None:
        self.id = call_id
        self.key = key
        self.client = client
        self.abandoned = False
        self.exc_sent = False
        self.thread_id: int | None = None


async def client_key_middleware(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """An ``MCPServer`` middleware that sets :data:`current_client_key` for the request."""
    connection = connection_of(ctx.session)
    if connection is None:
        key: Hashable = None
    elif is_legacy(connection):
        key = ("session", id(connection))
    else:
        info = getattr(getattr(connection, "client_params", None), "client_info", None)
        key = ("client", getattr(info, "name", None), getattr(info, "version", None))
    token = current_client_key.set(key)
    try:
        return await call_next(ctx)
    finally:
        current_client_key.reset(token)


class WorkerPool:
    """Runs calls on threads of their own (or awaits them), within limits that answer at once when reached.

    ``max_running``: calls at once (abandoned ones not counted: they are limited by ``max_abandoned`` per key);
    ``max_per_client``: calls at once from one client (0: no limit); ``what``/``setting`` name the pool and its
    size setting in the "busy" message.
    """

    def __init__(
        self,
        *,
        max_running: int,
        max_per_client: int = 0,
        max_abandoned: int = 4,
        what: str = "tool calls",
        setting: str = "c.NbMCP.max_tool_threads",
    ) -> None:
        self.max_running = max_running
        self.max_per_client = max_per_client
        self.max_abandoned = max_abandoned
        self.what = what
        self.setting = setting
        self._lock = threading.Lock()
        # Counts are derived from the live calls, not kept as counters: a call leaves with one dict.pop, which
        # an asynchronous exception arriving at any moment cannot leave half done.
        self._live: dict[int, _Call] = {}
        self._ids = itertools.count()
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting on _jobs; each job put there is matched by one decrement, under _lock

    def status(self) -> PoolStatus:
        with self._lock:
            live = list(self._live.values())
        abandoned = Counter(c.key for c in live if c.abandoned)
        return PoolStatus(sum(not c.abandoned for c in live), dict(abandoned), self.max_abandoned)

    def _admit(self, key: str, client: Hashable) -> _Call:
        with self._lock:
            live = list(self._live.values())
            stuck = sum(1 for c in live if c.abandoned and c.key == key)
            if self.max_abandoned and stuck >= self.max_abandoned:
                raise ToolBusy(
                    f"{key!r} is refused for now: {stuck} of its earlier calls timed out or were cancelled and their "
                    "threads are still running (Python cannot stop a thread blocked outside Python code). It "
                    "accepts calls again when they end; ask the notebook's owner to fix it or restart the kernel"
                )
            running = [c for c in live if not c.abandoned]
            if len(running) >= self.max_running:
                raise ToolBusy(
                    f"the kernel is busy: {len(running)} {self.what} are running, the most it runs at once "
                    f"({self.setting}); try again when one has finished"
                )
            if self.max_per_client and client is not None:
                mine = sum(1 for c in running if c.client == client)
                if mine >= self.max_per_client:
                    raise ToolBusy(
                        f"this client already has {mine} calls running, the most one client may "
                        "(c.NbMCP.max_calls_per_client); wait for one to finish"
                    )
            call = _Call(next(self._ids), key, client)
            self._live[call.id] = call
            return call

    async def run_sync(self, key: str, fn: Callable[[], T], *, timeout: float | None, client: Hashable = None) -> T:
        """``fn()`` on a thread of its own; :class:`ToolTimeout` after ``timeout`` seconds (None: no limit).

        On a timeout or a cancellation (the client went away) the call is abandoned: see the module docs.
        """
        call = self._admit(key, client)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()  # the request's context vars (capture buffers, client) go along
        try:
            self._dispatch((call, context, fn, loop, future))
        except BaseException:
            self._live.pop(call.id, None)
            raise
        try:
            with anyio.move_on_after(timeout):
                return await future
        except BaseException:  # the tool's own error (a no-op then), or cancelled: the client went away
            self._abandon(call)
            raise
        self._abandon(call)  # only a timeout gets here
        raise ToolTimeout(timeout or 0)

    async def run_async(
        self, key: str, fn: Callable[[], Awaitable[T]], *, timeout: float | None, client: Hashable = None
    ) -> T:
        """Await ``fn()`` within the same limits; after ``timeout`` seconds it is cancelled (:class:`ToolTimeout`)."""
        call = self._admit(key, client)
        try:
            with anyio.move_on_after(timeout):
                return await fn()
        finally:
            self._live.pop(call.id, None)
        raise ToolTimeout(timeout or 0)  # only a timeout gets here

    def _abandon(self, call: _Call) -> None:
        with self._lock:
            if call.id not in self._live:  # it finished meanwhile
                return
            call.abandoned = True
            if call.thread_id is not None:
                call.exc_sent = _raise_in_thread(call.thread_id, CallAbandoned)

    def _dispatch(self, job: tuple[Any, ...]) -> None:
        """Hand ``job`` to an idle thread, or start one for it."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
        threading.Thread(target=self._worker, args=(job,), name="nbmcp-call", daemon=True).start()

    def _worker(self, job: tuple[Any, ...]) -> None:
        while True:
            threading.current_thread().name = f"nbmcp-call-{job[0].key}"
            self._thread_main(*job)
            threading.current_thread().name = "nbmcp-call"
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    try:  # a job put just after the wait ended is this thread's: _dispatch counted on it
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    def _thread_main(
        self,
        call: _Call,
        context: contextvars.Context,
        fn: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            call.thread_id = threading.get_ident()  # from here on an asynchronous exception is caught below
            if not call.abandoned:  # abandoned before it started: do not start it
                value = context.run(fn)
        # A worker thread, no event loop: nothing to cancel here. Every failure goes to the awaiting future
        # (set below); CallAbandoned, sent when that future's caller went away, ends here, quietly.
        except BaseException as exc:
            error = exc
        finally:
            # The asynchronous exception may arrive even now: leave idempotently until it has been cleared.
            while True:
                try:
                    with self._lock:
                        self._live.pop(call.id, None)
                        sent = call.exc_sent
                    if sent:
                        _raise_in_thread(call.thread_id, None)  # clear one still pending
                    break
                except CallAbandoned:
                    continue
        if call.abandoned:
            return
        with contextlib.suppress(RuntimeError):  # the server's loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> bool:
    """Ask CPython to raise ``exc_type`` in thread ``thread_id`` at its next bytecode (None clears a pending one)."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    set_async_exc.restype = ctypes.c_int
    return set_async_exc(thread_id, ctypes.py_object(exc_type) if exc_type else ctypes.py_object()) == 1
