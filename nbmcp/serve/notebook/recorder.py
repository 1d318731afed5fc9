"""Record every ``execute`` of ``nbmcp serve`` as a code cell in a session notebook.

The notebook is nbformat v4, validated, and written atomically (temporary file in the same directory,
``fsync``, ``os.replace``). Writing happens behind the caller's back on a daemon thread: ``record()`` only
appends to an in-memory queue, the writer waits for a quiet moment (or at most ``max_delay`` seconds) and
writes everything recorded so far in one go, so a burst of executes costs one write. ``flush()`` and
``close()`` force the write; ``close()`` also runs at interpreter exit (``weakref.finalize``).

A cell keeps at most ``output_limit`` characters of each output (its head and tail, :mod:`..kernel.bounds`): what the
client was sent and more, never the whole of a cell that printed 100 MB; the text says where and how much was
cut, and ``metadata.nbmcp.cut_chars`` how much in all.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import json
import logging
import os
import secrets
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4

from ..kernel.bounds import DEFAULT_OUTPUT_LIMIT, bound_output

__all__ = ["SessionRecorder", "write_notebook_atomic"]

log = logging.getLogger(__name__)

#: nbclient (and papermill, nbval) let a cell with this tag raise without stopping a top-to-bottom run.
RAISES_EXCEPTION_TAG = "raises-exception"


def serialize_notebook(nb: nbformat.NotebookNode, *, validate: bool = True) -> str:
    """Validate ``nb`` and return it as JSON text, the way Jupyter writes notebooks (trailing newline)."""
    if validate:
        nbformat.validate(nb)
    text = v4.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_text_atomic(text: str, path: Path) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably; return the sha256 hex digest of the bytes.

    A temporary file is created next to ``path`` (so ``os.replace`` never crosses file systems), written,
    ``fsync``-ed and renamed over ``path``; the directory is ``fsync``-ed afterwards where supported. The
    file keeps the permission bits of the file it replaces; a new file gets the usual ``0o666 & ~umask``.
    On any failure the previous file is untouched and the temporary file is removed.
    """
    path = Path(path)
    data = text.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_notebook_atomic(nb: nbformat.NotebookNode, path: str | Path, *, validate: bool = True) -> str:
    """Validate ``nb`` and write it to ``path`` atomically (see :func:`write_text_atomic`).

    Raises ``nbformat.ValidationError`` for an invalid notebook and ``TypeError``/``ValueError`` for one that
    cannot be serialised, before any file is touched. Returns the sha256 hex digest of the bytes written
    (the version token used by :class:`nbmcp.serve.notebook.notebooks.NotebookFiles`).
    """
    return write_text_atomic(serialize_notebook(nb, validate=validate), Path(path))


class _Writer:
    """State shared by a :class:`SessionRecorder` and its writer thread (holds no reference to the recorder,
    so the recorder can be garbage collected and finalised)."""

    def __init__(
        self, path: Path, nb: nbformat.NotebookNode, quiet: float, max_delay: float, output_limit: int
    ) -> None:
        self.path = path
        self.output_limit = output_limit
        self.nb = nb  # touched only by the writer thread after start (and under ``io_lock`` on close)
        self.quiet = quiet
        self.max_delay = max_delay
        self.cond = threading.Condition()
        self.pending: collections.deque[tuple[str, str, list[Any], int | None, str | None, int]] = collections.deque()
        self.ids: set[str] = {c.get("id") for c in nb.cells if c.get("id")}
        self.recorded = 0  # sequence number of the last record()
        self.written = 0  # sequence number of the last record() that is on disk
        self.attempts = 0  # write attempts, successful or not
        self.writes = 0  # successful writes
        self.last_error: BaseException | None = None
        self.first_pending_at: float | None = None
        self.last_attempt_at = 0.0
        self.last_record_at = 0.0
        self.flush_requested = False
        self.stopping = False
        self.closed = False
        self.io_lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name=f"nbmcp-recorder:{path.name}", daemon=True)

    # -- caller side -----------------------------------------------------------------------------------
    def record(
        self, code: str, outputs: list[Any], execution_count: int | None, status: str | None, cut_chars: int = 0
    ) -> str:
        now = time.monotonic()
        with self.cond:
            if self.closed or self.stopping:
                raise RuntimeError(f"session recorder for {self.path} is closed")
            cell_id = secrets.token_hex(4)
            while cell_id in self.ids:
                cell_id = secrets.token_hex(4)
            self.ids.add(cell_id)
            self.pending.append((cell_id, code, outputs, execution_count, status, cut_chars))
            self.recorded += 1
            if self.first_pending_at is None:
                self.first_pending_at = now
            self.last_record_at = now
            self.cond.notify_all()
        return cell_id

    def flush(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            target = self.recorded
            attempts0 = self.attempts
            while self.written < target:
                if self.attempts > attempts0 and self.last_error is not None:
                    err = self.last_error
                    raise OSError(f"could not write session notebook {self.path}: {err}") from err
                if not self.thread.is_alive():
                    break
                self.flush_requested = True
                self.cond.notify_all()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"session notebook {self.path} not written within {timeout} s")
                self.cond.wait(remaining)
        if self.written < target:  # writer thread gone (never started, or stopped): write here
            self._write_once()
            if self.last_error is not None and self.written < target:
                err = self.last_error
                raise OSError(f"could not write session notebook {self.path}: {err}") from err

    def close(self, *, raise_errors: bool) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
        try:
            self.flush(timeout=30.0)
        except Exception as exc:
            if raise_errors:
                raise
            log.warning("nbmcp: session notebook %s not fully written: %s", self.path, exc)
        finally:
            with self.cond:
                self.stopping = True
                self.cond.notify_all()
            if self.thread.is_alive() and self.thread is not threading.current_thread():
                self.thread.join(timeout=5.0)

    # -- writer thread -----------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self.stopping:
                        return
                    if self.written < self.recorded:
                        if self.flush_requested:
                            break
                        assert self.first_pending_at is not None
                        due = min(self.last_record_at + self.quiet, self.first_pending_at + self.max_delay)
                        if self.last_error is not None:
                            # A persistent failure (directory gone, disk full) must not make us spin:
                            # retry on flush() or after max_delay.
                            due = max(due, self.last_attempt_at + self.max_delay)
                        wait = due - time.monotonic()
                        if wait <= 0:
                            break
                        self.cond.wait(wait)
                    else:
                        self.flush_requested = False
                        self.cond.wait()
            self._write_once()

    def _write_once(self) -> None:
        with self.io_lock:
            with self.cond:
                batch = list(self.pending)
                self.pending.clear()
                target = self.recorded
                self.flush_requested = False
            # Cells move into the notebook once; a failed write is retried with the same notebook.
            self.nb.cells.extend(self._make_cell(*item) for item in batch)
            error: BaseException | None = None
            try:
                write_notebook_atomic(self.nb, self.path)
            except Exception as exc:
                error = exc
            with self.cond:
                self.attempts += 1
                self.last_attempt_at = time.monotonic()
                self.last_error = error
                if error is None:
                    self.writes += 1
                    self.written = max(self.written, target)
                    self.first_pending_at = self.last_record_at if self.written < self.recorded else None
                self.cond.notify_all()

    def _make_cell(
        self,
        cell_id: str,
        code: str,
        outputs: list[Any],
        execution_count: int | None,
        status: str | None,
        cut_chars: int = 0,
    ) -> nbformat.NotebookNode:
        metadata: dict[str, Any] = {}
        if any(_get(o, "output_type") == "error" for o in outputs):
            metadata["tags"] = [RAISES_EXCEPTION_TAG]
        if status not in (None, "ok"):
            metadata["nbmcp"] = {"status": status}
        try:
            bounded = [bound_output(dict(o), self.output_limit) for o in outputs]
            cut = cut_chars + sum(n for _, n in bounded)
            if cut:
                metadata.setdefault("nbmcp", {})["cut_chars"] = cut
            nodes = [nbformat.from_dict(copy.deepcopy(o)) for o, _ in bounded]
            cell = v4.new_code_cell(
                source=code, id=cell_id, execution_count=execution_count, outputs=nodes, metadata=metadata
            )
            json.dumps(cell, allow_nan=False)
        except Exception as exc:  # invalid or unserialisable outputs: keep the code, drop the outputs
            log.warning("nbmcp: outputs of recorded cell %s dropped: %s", cell_id, exc)
            metadata.setdefault("nbmcp", {})["outputs_dropped"] = f"{type(exc).__name__}: {exc}"[:500]
            cell = v4.new_code_cell(source=code, id=cell_id, execution_count=execution_count, metadata=metadata)
        return cell


def _get(obj: Any, key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return None


class SessionRecorder:
    """Records every execute as a code cell with its outputs in a session notebook.

    nbformat v4, validated, written atomically (temporary file in the same directory, ``fsync``,
    ``os.replace``). Writes happen on a background thread that coalesces bursts (many records, one write);
    ``record()`` does no I/O. Everything is flushed on :meth:`close`, which also runs at interpreter exit.

    If ``path`` already holds a notebook, new cells are appended to it; a file there that is not a
    notebook is refused (``ValueError``) rather than overwritten. The file is created on the first write.

    Each output keeps at most ``output_limit`` characters of text (head and tail, with a note where it was cut).
    Cells whose outputs contain an error are tagged ``raises-exception`` so that the notebook re-runs top to
    bottom with nbclient; cells whose status was not ``"ok"`` carry ``metadata.nbmcp.status``.
    """

    path: Path

    def __init__(
        self,
        path: str | Path,
        *,
        kernel_name: str = "python3",
        language_info: dict | None = None,
        kernel_display_name: str | None = None,
        quiet: float = 0.05,
        max_delay: float = 1.0,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self.path = Path(path).absolute()
        if self.path.exists():
            try:
                nb = nbformat.read(self.path, as_version=4)
                nbformat.validate(nb)
            except Exception as exc:
                raise ValueError(f"{self.path} exists and is not a valid notebook; refusing to overwrite it") from exc
            if nb.nbformat_minor < 5:
                nb = v4.upgrade(nb, from_version=4, from_minor=nb.nbformat_minor)
        else:
            if not self.path.parent.is_dir():
                raise FileNotFoundError(f"directory {self.path.parent} for the session notebook does not exist")
            kernelspec: dict[str, Any] = {
                "name": kernel_name,
                "display_name": kernel_display_name or kernel_name,
            }
            if language_info and language_info.get("name"):
                kernelspec["language"] = language_info["name"]
            metadata: dict[str, Any] = {"kernelspec": kernelspec}
            if language_info:
                metadata["language_info"] = copy.deepcopy(dict(language_info))
            nb = v4.new_notebook(metadata=metadata)
        self._w = _Writer(self.path, nb, quiet=quiet, max_delay=max_delay, output_limit=output_limit)
        self._w.thread.start()
        self._finalizer = weakref.finalize(self, self._w.close, raise_errors=False)

    @property
    def writes(self) -> int:
        """Number of successful writes of the notebook file so far (for tests and diagnostics)."""
        return self._w.writes

    @property
    def last_error(self) -> BaseException | None:
        """The error of the last write attempt, or ``None`` if it succeeded."""
        return self._w.last_error

    @property
    def closed(self) -> bool:
        return self._w.closed

    def record(
        self,
        code: str,
        outputs: list[dict],
        execution_count: int | None,
        *,
        status: str | None = None,
        cut_chars: int = 0,
    ) -> str:
        """Queue a code cell with nbformat v4 ``outputs``; return its cell id. O(1), no I/O.

        ``outputs`` must not be mutated by the caller afterwards (they are copied on the writer thread).
        ``status`` (``"ok"``, ``"error"``, ``"aborted"``, ``"timeout"``) is kept in the cell metadata
        when it is not ``"ok"``. ``cut_chars``: characters already cut from the outputs while they were collected
        (:class:`~nbmcp.serve.kernel.bounds.StreamText`), added to the cell's ``metadata.nbmcp.cut_chars``.
        """
        return self._w.record(code, outputs, execution_count, status, cut_chars)

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything recorded so far is on disk; raise ``OSError`` if the write failed
        (the cells stay queued and are written by a later attempt)."""
        self._w.flush(timeout)

    def close(self) -> None:
        """Flush and stop the writer thread. Idempotent; raises ``OSError`` if the final write failed."""
        self._finalizer.detach()
        self._w.close(raise_errors=True)

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
