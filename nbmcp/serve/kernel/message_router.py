"""The message router under :class:`~.session.KernelSession`: each kernel message to the request that caused it,
request/reply round trips and the readiness handshake."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...exceptions import KernelDeadError, KernelSessionError
from .channels import Inbox, KernelChannels

__all__ = ["MessageRouter"]


class MessageRouter:
    """Routes a kernel's messages by ``parent_header.msg_id``; the base of :class:`~.session.KernelSession`,
    whose ``__init__`` sets the state below."""

    kind: str
    kernel_name: str
    connection_file: str | None
    kernel_info: dict[str, Any]
    execution_state: str
    _manager: Any
    _channels: KernelChannels | None
    _waiters: dict[str, Inbox]
    _closed: bool
    _died: bool

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
