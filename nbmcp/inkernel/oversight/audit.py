"""The JSONL audit log: one line per served call (tool, resource read, prompt).

The in-kernel server's lifecycle attaches an :class:`AuditLog` as a call listener. The listener runs on the
server's event loop right after each call, so it only puts the record on a queue (about a microsecond); a
writer thread formats lines and appends them in batches. Arguments are never written, only their digest and
size, and the bearer token is redacted from every line should a tool's error message ever contain it.

Each line::

    {"time": "2025-01-01T12:00:00.123Z", "ts": 1735732800.123, "server": "<kernel id>", "client": "claude-code",
     "kind": "tool", "name": "fit", "arguments_sha256": "9f2c...", "arguments_size": 17,
     "duration_ms": 3.2, "outcome": "ok", "error": null}

``outcome`` is ``ok``, ``error`` or ``denied`` (declined by the owner, timed out, or refused by policy).

Every approval decision gets a line of its own, before its call's line (who decided: the ``panel``, the
``client``'s user through elicitation, or the ``policy``)::

    {"time": "...", "ts": ..., "server": "<kernel id>", "client": "claude-code", "kind": "approval",
     "name": "drop_table", "decided_by": "client", "outcome": "approved", "error": null}
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["DEFAULT_NAME", "AuditLog", "default_path", "read_lines"]

DEFAULT_NAME = "nbmcp-audit.jsonl"
ROTATE_BYTES = 50_000_000  # at open, a bigger log is renamed to ``<name>.1`` (one old generation kept)
REDACTED = "[redacted token]"

_STOP = object()


class _Decision(NamedTuple):
    time: float
    tool: str
    client: str
    decided_by: str
    approved: bool
    reason: str


def default_path() -> Path:
    """``nbmcp-audit.jsonl`` in the Jupyter runtime dir (one file for all kernels; lines name their server)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / DEFAULT_NAME


class AuditLog:
    """Appends one JSON line per call record (the server's ``CallRecord``); call it as a call listener.

    ``secret`` returns the current token (it may be rotated) so that it can be redacted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        server_id: str | None = None,
        secret: Callable[[], str | None] | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if path else default_path()
        self.server_id = server_id
        self._secret = secret
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            if self.path.stat().st_size > ROTATE_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        # O_APPEND: several kernels may share the file; each batch is one write() of whole lines.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self.lines_written = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="nbmcp-audit", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    # -- the call listener (server thread): cheap ----------------------------------------------

    def __call__(self, record: Any) -> None:
        if not self._closed:
            self._queue.put(record)

    def approval(self, tool: str, client: str, decided_by: str, approved: bool, reason: str = "") -> None:
        """Record one approval decision (an approval listener of the call pipeline)."""
        if not self._closed:
            self._queue.put(_Decision(time.time(), tool, client, decided_by, approved, reason))

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch, flushed = [item], []
            # Drain what else is waiting (bounded): bursts become one write.
            for _ in range(10_000):
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for entry in batch:
                if entry is _STOP:
                    stop = True
                elif isinstance(entry, threading.Event):
                    flushed.append(entry)
                else:
                    try:
                        lines.append(self.format(entry))
                    except Exception:
                        self.errors += 1
            if lines:
                data = "".join(lines).encode("utf-8", "replace")
                try:
                    while data:
                        written = os.write(self._fd, data)
                        data = data[written:]
                    self.lines_written += len(lines)
                except OSError:
                    self.errors += 1
            for event in flushed:
                event.set()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def format(self, record: Any) -> str:
        """One JSON line (with the newline) for a call record; the token, if present anywhere, is redacted."""
        stamp = record.time
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
            "ts": round(stamp, 3),
            "server": self.server_id,
            "client": record.client,
        }
        if isinstance(record, _Decision):
            entry.update(
                kind="approval",
                name=record.tool,
                decided_by=record.decided_by,
                outcome="approved" if record.approved else "denied",
                error=record.reason or None,
            )
        else:
            entry.update(
                kind=record.kind,
                name=record.name,
                arguments_sha256=record.arguments_digest,
                arguments_size=record.arguments_size,
                duration_ms=round(record.duration_ms, 3),
                outcome=record.outcome,
                error=record.error,
            )
        line = json.dumps(entry, ensure_ascii=False, default=str)
        secret = self._secret() if self._secret is not None else None
        if secret and secret in line:
            line = line.replace(secret, REDACTED)
        return line + "\n"

    # -- control -------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is on disk; False if that took longer than ``timeout``."""
        if self._closed or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer thread and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def read_lines(path: str | os.PathLike[str], last: int | None = None) -> list[dict[str, Any]]:
    """The entries of an audit log (the last ``last`` of them), skipping any malformed line."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return entries[-last:] if last else entries
