"""Reading the user's objects without trusting them: off the server's event loop, each read within a time limit.

An exposed object is the user's code: its ``shape``, ``len``, schema or pickling can take any time, or hang. The
server's event loop must never wait on one (every client would wait with it), and a read of many objects (the
``nbmcp://objects`` index, completion's column names, fingerprints after a cell) must not wait on its slowest:
each object is read on a thread with a time limit, and one that does not answer is marked in its own entry.
A thread that does not answer cannot be stopped (see :mod:`.workers`): it is abandoned, and the same object is
not asked again until it has finished, so a hung object costs one thread (a few in the pool), not one per read.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ...exceptions import ToolTimeout
from .workers import ToolBusy

__all__ = [
    "OBJECT_READS_AT_ONCE",
    "OBJECT_READ_SECONDS",
    "LimitedCalls",
    "ReadFailed",
    "read_each",
    "to_thread_limited",
]

T = TypeVar("T")

OBJECT_READ_SECONDS = 2.0
"""How long one object's read (kind and shape, columns, fingerprint) may take in a read of many before it is marked."""
OBJECT_READS_AT_ONCE = 4
"""Objects read at once by one read of many: an index of 100 objects leaves the read pool to other clients."""

RunLimited = Callable[[str, Callable[[], Any], float], Awaitable[Any]]
"""``await run(key, fn, seconds)``: ``fn()`` off the loop; ``ToolTimeout``/``TimeoutError`` after ``seconds``."""


@dataclass(frozen=True)
class ReadFailed:
    """What one object's read gave instead of a value: why, in a sentence."""

    message: str


async def read_each(
    run: RunLimited, reads: dict[str, Callable[[], T]], what: str, seconds: float = OBJECT_READ_SECONDS
) -> dict[str, T | ReadFailed]:
    """Run each of ``reads`` (name -> a read of that object's ``what``) with ``run``, a few at once, each within
    ``seconds``. A read that raises, times out or is refused (its earlier reads are still stuck) gives a
    :class:`ReadFailed` that says so; the others are not held up."""
    results: dict[str, T | ReadFailed] = {}
    at_once = anyio.Semaphore(OBJECT_READS_AT_ONCE)

    async def read(name: str, fn: Callable[[], T]) -> None:
        async with at_once:
            try:
                results[name] = await run(f"{what} of {name}", fn, seconds)
            except (ToolTimeout, TimeoutError):
                results[name] = ReadFailed(f"{what} did not answer within {seconds:g} s")
            except ToolBusy as exc:
                results[name] = ReadFailed(f"not read: {exc}")
            except Exception as exc:  # one broken object (a raising shape, a gone variable) stays in its entry
                results[name] = ReadFailed(str(exc) if isinstance(exc, LookupError) else f"{type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as group:
        for name, fn in reads.items():
            group.start_soon(read, name, fn)
    return results


async def to_thread_limited(key: str, fn: Callable[[], T], seconds: float) -> T:
    """Without a server's pool: ``fn()`` on a thread that is abandoned (``TimeoutError``) after ``seconds``."""
    with anyio.fail_after(seconds):
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)


class LimitedCalls:
    """Synchronous calls with a time limit, for code that is not on an event loop (the post-cell fingerprints on
    the kernel's main thread). A call runs on a thread of its own; after ``seconds`` the caller gets ``None`` and
    the thread is abandoned; until it ends, calls with the same key are not started (they get ``None`` at once)."""

    def __init__(self, seconds: float = OBJECT_READ_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._stuck: set[Hashable] = set()

    def stuck(self) -> set[Hashable]:
        with self._lock:
            return set(self._stuck)

    def call(self, key: Hashable, fn: Callable[[], T]) -> T | None:
        with self._lock:
            if key in self._stuck:
                return None
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                value = fn()
            except Exception:
                value = None
            with self._lock:
                outcome["value"] = value
                self._stuck.discard(key)
            done.set()

        threading.Thread(target=work, name="nbmcp-limited-read", daemon=True).start()
        done.wait(self.seconds)
        with self._lock:
            if "value" in outcome:
                return outcome["value"]
            self._stuck.add(key)  # work() takes it off when it ends, under the same lock
        return None
