"""Ending tasks without swallowing the caller's cancellation.

``task.cancel(); with suppress(BaseException): await task`` also swallows a cancellation of the *caller* that
arrives while it waits: a cancelled call then goes on as if nothing happened (an execute that went on to send its
code). These wait with ``asyncio.wait``, which raises neither how the tasks ended nor our own cancellation away.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "wait_ended"]


async def wait_ended(*tasks: asyncio.Future[Any]) -> None:
    """Wait until every task has ended, however it ended (its error is retrieved and dropped: no "exception was
    never retrieved" log). A cancellation of the caller goes through and leaves the tasks running."""
    try:
        pending = [task for task in tasks if not task.done()]
        if pending:
            await asyncio.wait(pending)
    finally:
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks and wait until they have ended (see :func:`wait_ended`)."""
    for task in tasks:
        task.cancel()
    await wait_ended(*tasks)
