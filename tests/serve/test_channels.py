"""The inbox of one request: order, wake-up, timeout."""

from __future__ import annotations

import asyncio

import pytest

from nbmcp.serve.kernel.channels import Inbox, synthetic_status

pytestmark = pytest.mark.anyio


async def test_messages_come_out_in_order_and_wake_a_waiting_reader() -> None:
    inbox = Inbox()
    inbox.put_nowait(("shell", {"n": 1}))
    assert await inbox.get(0) == ("shell", {"n": 1})
    reader = asyncio.ensure_future(inbox.get(5))
    await asyncio.sleep(0.01)
    inbox.put_nowait(("iopub", {"n": 2}))
    assert await asyncio.wait_for(reader, 1) == ("iopub", {"n": 2})


async def test_an_empty_inbox_times_out() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await Inbox().get(0.01)


def test_synthetic_status_looks_like_a_kernel_status() -> None:
    msg = synthetic_status("dead")
    assert msg["header"]["msg_type"] == "status" and msg["content"] == {"execution_state": "dead"}
