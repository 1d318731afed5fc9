"""Per-call capture of what a tool prints.

``IPython.utils.capture`` swaps ``sys.stdout`` for the whole process, so a tool running on a worker
thread would swallow the user's own cell output. Instead ``sys.stdout``/``sys.stderr`` are wrapped once
by a stream that routes writes to the buffer of the current call (a context variable) and everything
else to the original stream.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

__all__ = ["capture_displays", "capture_output", "install", "uninstall"]

_buffer: ContextVar[io.StringIO | None] = ContextVar("nbmcp_capture", default=None)
_lock = threading.Lock()
_installed = 0


class RoutingStream:
    """Writes go to the current call's buffer when one is set, else to ``original``."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        buffer = _buffer.get()
        if buffer is not None:
            return buffer.write(text)
        return self.original.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _buffer.get() is None:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def install() -> None:
    """Wrap sys.stdout and sys.stderr (reference counted: nested servers share one wrapper)."""
    global _installed
    with _lock:
        _installed += 1
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, RoutingStream):
                setattr(sys, name, RoutingStream(stream))


def uninstall() -> None:
    global _installed
    with _lock:
        _installed = max(0, _installed - 1)
        if _installed:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            # Something else may have wrapped us since (e.g. %%capture); only unwrap our own layer.
            if isinstance(stream, RoutingStream):
                setattr(sys, name, stream.original)


@contextlib.contextmanager
def capture_output() -> Iterator[io.StringIO]:
    """Capture what this thread/task prints, without touching other threads' output."""
    buffer = io.StringIO()
    token = _buffer.set(buffer)
    try:
        yield buffer
    finally:
        _buffer.reset(token)


@contextlib.contextmanager
def capture_displays() -> Iterator[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Capture ``display(...)`` calls made on this thread as (data, metadata) pairs.

    Uses ipykernel's thread-local display-publisher hooks, so displays from the user's own cells, on the
    main thread, still reach the notebook. Outside an ipykernel nothing is captured.
    """
    displays: list[tuple[dict[str, Any], dict[str, Any]]] = []
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    publisher = getattr(shell, "display_pub", None)
    if publisher is None or not hasattr(publisher, "register_hook"):
        yield displays
        return

    def hook(msg: dict[str, Any]) -> None:
        if msg.get("msg_type") in ("display_data", "update_display_data"):
            content = msg.get("content", {})
            displays.append((content.get("data", {}), content.get("metadata", {})))
            return None
        return msg  # type: ignore[return-value]

    publisher.register_hook(hook)
    try:
        yield displays
    finally:
        publisher.unregister_hook(hook)
