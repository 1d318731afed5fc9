"""How messages travel between ``KernelSession`` and its kernel: ZMQ channels or a Jupyter Server WebSocket.

Each transport runs one reader task per channel and hands every message it receives to ``dispatch``; the
session routes it to the :class:`Inbox` of the request that caused it. An inbox wakes its reader with a
future instead of ``asyncio.wait_for(queue.get(), t)``: no task per message on the hot path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ...cancellation import cancel_and_wait

__all__ = ["Dispatch", "Inbox", "KernelChannels", "WebSocketChannels", "ZMQChannels", "synthetic_status"]

Dispatch = Callable[[str, dict[str, Any]], None]
Message = tuple[str, dict[str, Any]]


class KernelChannels(Protocol):
    """What a session needs from a transport."""

    session: Any  # jupyter_client.session.Session: builds (and signs) the messages we send

    async def start(self, dispatch: Dispatch) -> None: ...

    def send(self, channel: str, msg: dict[str, Any]) -> None: ...

    def heartbeat_ok(self) -> bool: ...

    async def close(self) -> None: ...


class ZMQChannels:
    """Channels of a jupyter_client ``AsyncKernelClient`` (a kernel we started, or one attached by file)."""

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
        # ``get_msg`` polls, then receives: two awaits per message where one does
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
        # Not ``channel.send`` (``Session.send``): it sends through a *blocking* shadow of the asyncio socket,
        # and a blocking send processes the socket's pending commands -- among them "a message arrived" --
        # behind pyzmq's back: the edge that should wake our pending ``recv`` is consumed, and every later
        # reply then sits unread in the socket. That was the "kernel did not become ready" of concurrent
        # starts (the reply to one kernel_info probe arriving while the next probe was sent). Sending through
        # the asyncio socket lets pyzmq re-check for input after the send.
        if self.session.adapt_version:  # a kernel of an older protocol, as ``Session.send`` adapts
            from jupyter_client.adapter import adapt

            msg = adapt(msg, self.session.adapt_version)
        sock = getattr(self.client, f"{channel}_channel").socket
        sent = sock.send_multipart(self.session.serialize(msg))
        if not sent.done():  # the socket's high-water mark: pyzmq finishes the send when it can
            sent.add_done_callback(_retrieve)

    def heartbeat_ok(self) -> bool:
        return not self._heartbeat or self.client.hb_channel.is_beating()

    async def close(self) -> None:
        self.closed = True
        await cancel_and_wait(*self._tasks)
        with contextlib.suppress(Exception):
            self.client.stop_channels()


class WebSocketChannels:
    """The Jupyter Server kernel WebSocket (``/api/kernels/{id}/channels``), JSON message protocol."""

    def __init__(self, ws_url: str, headers: dict[str, str]) -> None:
        import secrets

        from jupyter_client.session import Session

        self.ws_url = ws_url
        self.headers = headers
        # Messages go to the server as JSON and the server signs what it passes to the kernel: this session never
        # signs anything. An empty key would make jupyter_client log "Message signing is disabled. This is insecure"
        # on every connection, a false alarm here; an unused random key does not.
        self.session = Session(key=secrets.token_hex(16).encode(), username="nbmcp")
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
                    dispatch("iopub", synthetic_status("dead"))
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
            await cancel_and_wait(self._task)


def synthetic_status(state: str) -> dict[str, Any]:
    """A ``status`` message no kernel sent: how a lost WebSocket tells waiting requests the kernel is gone."""
    return {
        "header": {"msg_type": "status", "msg_id": uuid.uuid4().hex},
        "parent_header": {},
        "metadata": {},
        "content": {"execution_state": state},
    }


class Inbox:
    """Messages for one request, in arrival order."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque[Message] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Message) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float) -> Message:
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


def _retrieve(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled():
        sent.exception()  # a failed late send has no one to tell (the request times out); no "never retrieved"


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
