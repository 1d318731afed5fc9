"""Approvals: calls that wait for the notebook owner's decision.

A tool marked ``requires_approval=True`` and the in-kernel ``execute`` ask the server's ``approver`` before they
run. The :data:`broker` is that approver while someone can answer (the panel in :mod:`nbmcp.inkernel.oversight.panel`
serves it while one of its views is open): each request waits until the owner approves or denies it, or the
server's approval timeout passes, which denies. With nobody to ask, a request is denied at once with an error
that says how to get asked — or, under the approval policy ``client`` (``%mcp approve client``), the call pipeline
asks the *client's* user through elicitation instead (the panel still wins while it is open).

No widgets here: the broker is plain Python, so code (and tests) can decide requests as the panel's buttons do.
Requests are made on the server's event loop; decisions arrive from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ...exceptions import ApprovalDenied

__all__ = ["ApprovalBroker", "Approver", "NobodyToAsk", "PendingApproval", "broker", "in_kernel", "pending_approvals"]

Approver = Callable[[str, dict[str, Any], str], Awaitable[bool]]


class NobodyToAsk(ApprovalDenied):
    """No panel can show the request now: denied at once, or (approval policy ``client``) asked of the client."""


@dataclass
class PendingApproval:
    """A call waiting for the owner's decision."""

    id: str
    tool: str
    arguments: dict[str, Any]
    client: str
    created: float
    timeout: float
    future: asyncio.Future[bool] = field(repr=False)
    loop: asyncio.AbstractEventLoop = field(repr=False)

    @property
    def seconds_left(self) -> float:
        """Seconds until the request is denied for want of an answer."""
        return max(0.0, self.created + self.timeout - time.time())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "arguments": self.arguments,
            "client": self.client,
            "waited_s": round(time.time() - self.created, 3),
            "timeout_s": self.timeout,
        }


def in_kernel() -> bool:
    """True inside an ipykernel, where a widget's comm reaches a frontend (outside, comms are dummies)."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return False
    return Kernel.initialized()


def _set_future(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _fail_future(future: asyncio.Future[bool], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class ApprovalBroker:
    """Pending requests, and the server whose ``approver`` this broker is (at most one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pending: dict[str, PendingApproval] = {}
        self._ids = itertools.count(1)
        self._server: Any = None  # the NbMCPServer asking
        self._someone_to_ask: Callable[[], bool] = lambda: False
        self._listeners: list[Callable[[], None]] = []
        self.approver: Approver | None = None
        """The function installed as the server's ``approver`` (None while the broker serves no server)."""

    # -- which server asks ---------------------------------------------------------------------

    @property
    def server(self) -> Any:
        """The :class:`~nbmcp.inkernel.server.NbMCPServer` this broker approves for, or None."""
        return self._server

    def serve(self, server: Any, someone_to_ask: Callable[[], bool]) -> None:
        """Become ``server``'s approver; ``someone_to_ask()`` says whether a frontend can show a request now."""
        with self._lock:
            self._someone_to_ask = someone_to_ask
            if server is self._server:
                return
            self.release("the nbmcp server was stopped")
            broker = self

            async def approver(tool: str, arguments: dict[str, Any], client: str) -> bool:
                return await broker.ask(server, tool, arguments, client)

            self._server, self.approver = server, approver
            server.approver = approver

    def release(self, reason: str) -> None:
        """Stop being the approver; every waiting request is denied with ``reason``."""
        with self._lock:
            server, approver = self._server, self.approver
            if server is not None and server.approver is approver:
                server.approver = None
            self._server, self.approver = None, None
            self.deny_all(reason)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from any thread, keep it cheap) whenever a request arrives or is decided."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- requests (the server's event loop) ----------------------------------------------------

    async def ask(self, server: Any, tool: str, arguments: dict[str, Any], client: str) -> bool:
        """Wait for the owner's decision on one call; denied at once when nobody can answer, or on timeout."""
        if not (in_kernel() and self._someone_to_ask()):
            where = "no Jupyter frontend to ask" if not in_kernel() else "no approval panel open in the notebook"
            raise NobodyToAsk(
                f"{tool!r} needs the notebook owner's approval, but there is {where}: the call was declined. "
                "Ask them to run `%mcp panel` in the notebook (or `%mcp approve all`, or `%mcp approve client` "
                "to ask the assistant's user)."
            )
        loop = asyncio.get_running_loop()
        timeout = float(server.approval_timeout)
        request = PendingApproval(
            id=str(next(self._ids)),
            tool=tool,
            arguments=dict(arguments),
            client=client,
            created=time.time(),
            timeout=timeout,
            future=loop.create_future(),
            loop=loop,
        )
        with self._lock:
            self._pending[request.id] = request
        self._changed()
        try:
            return await asyncio.wait_for(request.future, timeout)
        except asyncio.TimeoutError:
            raise ApprovalDenied(
                f"the notebook's owner did not answer within {timeout:g} s, so the call to {tool!r} was declined"
            ) from None
        finally:
            with self._lock:
                self._pending.pop(request.id, None)
            self._changed()

    # -- decisions (any thread) ----------------------------------------------------------------

    def pending(self) -> list[PendingApproval]:
        """Requests waiting for a decision, oldest first."""
        with self._lock:
            return list(self._pending.values())

    def resolve(self, request_id: str | None, approved: bool) -> str:
        """Approve or deny one pending call (the oldest if ``request_id`` is None); returns its id."""
        with self._lock:
            if request_id is None:
                if not self._pending:
                    raise LookupError("no call is waiting for approval")
                request_id = next(iter(self._pending))
            request = self._pending.pop(str(request_id), None)
            if request is None:
                waiting = ", ".join(self._pending) or "none"
                raise LookupError(f"no pending approval with id {request_id!r} (waiting: {waiting})")
        with contextlib.suppress(RuntimeError):  # the server's loop is gone: the call is over anyway
            request.loop.call_soon_threadsafe(_set_future, request.future, approved)
        self._changed()
        return request.id

    def deny_all(self, reason: str) -> None:
        """Deny every waiting request, telling each client ``reason``."""
        with self._lock:
            requests, self._pending = list(self._pending.values()), {}
        for request in requests:
            denied = ApprovalDenied(f"{reason}, so the call to {request.tool!r} was declined")
            with contextlib.suppress(RuntimeError):
                request.loop.call_soon_threadsafe(_fail_future, request.future, denied)
        if requests:
            self._changed()


broker = ApprovalBroker()
"""The kernel's one broker: every panel shows and decides its requests."""


def pending_approvals() -> list[dict[str, Any]]:
    """Calls waiting for the owner's decision, oldest first."""
    return [p.as_dict() for p in broker.pending()]
