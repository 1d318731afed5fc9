"""Notebook files for ``nbmcp serve``: read, edit and run cells of ``.ipynb`` files under a root directory.

Every path is confined to the root (no ``..`` escape, no absolute path elsewhere, no symlink pointing
out). Reads return an opaque version token (sha256 of the file's bytes); an edit names the version it was
based on and is refused with :class:`StaleNotebookError` if the file changed since. Writes are atomic
(:func:`nbmcp.serve.notebook.recorder.write_notebook_atomic`).

Cell ids: notebooks older than nbformat 4.5 have none. They are upgraded to 4.5 in memory with ids
``cell-<index>`` -- deterministic, so that ids returned by :meth:`NotebookFiles.read` still name the same
cells when :meth:`NotebookFiles.edit` reads the unchanged file again; the first write stores them.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4
from nbformat.corpus.words import generate_corpus_id

from ...exceptions import StaleNotebookError
from .recorder import serialize_notebook, write_notebook_atomic, write_text_atomic

__all__ = ["NotebookFiles", "StaleNotebookError", "apply_operations", "notebook_state", "write_notebook_atomic"]

SUMMARY_CHARS = 200
MAX_LISTED = 50
_MAX_DIRS_WALKED = 2000
CELL_TYPES = ("code", "markdown", "raw")
_OPS = {
    "insert": ({"op", "source"}, {"cell_type", "after", "before", "metadata"}),
    "replace": ({"op", "cell_id", "source"}, {"cell_type", "metadata"}),
    "delete": ({"op", "cell_id"}, set()),
}
DEFAULT_METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
    "language_info": {"name": "python"},
}


def version_of(data: bytes) -> str:
    """The version token of a notebook file's content."""
    return hashlib.sha256(data).hexdigest()


def parse_notebook(data: bytes, name: str = "notebook") -> nbformat.NotebookNode:
    """Parse notebook bytes into nbformat v4.5 (cell ids present and unique), without validating.

    Cells without an id (nbformat < 4.5) get ``cell-<index>``; missing or duplicate ids in a 4.5 file get
    the same deterministic repair.
    """
    try:
        # nbformat.reader.reads parses without validating: nbformat.validate() would "repair" missing or
        # duplicate ids with random ones, different on every read.
        nb = nbformat.convert(nbformat.reader.reads(data.decode("utf-8")), 4)
    except Exception as exc:
        raise ValueError(f"{name} is not a readable Jupyter notebook: {exc}") from exc
    minor = nb.get("nbformat_minor", 0)
    if minor < 5:
        nb = v4.upgrade(nb, from_version=4, from_minor=minor)  # sets 4.5 and random ids ...
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i}"  # ... which would differ on every read: make them stable
    else:
        seen: set[str] = set()
        for i, cell in enumerate(nb.cells):
            cid = cell.get("id")
            if not cid or cid in seen:
                cid = f"cell-{i}"
                while cid in seen:
                    cid += "x"
                cell["id"] = cid
            seen.add(cid)
    return nb


def summarize_output(output: dict) -> dict[str, Any]:
    """A short description of one output: its type and either the first characters of its text or its
    mime types."""
    otype = output.get("output_type")
    summary: dict[str, Any] = {"output_type": otype}
    text: str | None = None
    if otype == "stream":
        summary["name"] = output.get("name")
        text = _text(output.get("text", ""))
    elif otype == "error":
        text = f"{output.get('ename', '')}: {output.get('evalue', '')}"
    elif otype in ("execute_result", "display_data"):
        data = output.get("data", {})
        summary["mime"] = sorted(data)
        if "text/plain" in data:
            text = _text(data["text/plain"])
    if text is not None:
        summary["text"] = text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS] + "…"
    return summary


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _cell_info(cell: dict) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": cell["id"],
        "cell_type": cell["cell_type"],
        "source": _text(cell.get("source", "")),
    }
    code = cell["cell_type"] == "code"
    info["execution_count"] = cell.get("execution_count") if code else None
    info["outputs"] = [summarize_output(o) for o in cell.get("outputs", [])] if code else []
    return info


def notebook_state(path: str, nb: nbformat.NotebookNode, version: str) -> dict[str, Any]:
    """What ``notebook_read`` returns for ``nb`` (see :meth:`NotebookFiles.read`); also for a shared document."""
    return {
        "path": path,
        "version": version,
        "kernel": nb.metadata.get("kernelspec", {}).get("name"),
        "cells": [_cell_info(c) for c in nb.cells],
    }


class NotebookFiles:
    """Read, edit and run ``.ipynb`` files under ``root``; see the module docstring."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"notebook root {self.root} is not a directory")
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- paths -----------------------------------------------------------------------------------------
    def resolve(self, path: str, *, must_exist: bool = True) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it).

        ``ValueError`` if it leaves the root (``..``, an absolute path elsewhere, a symlink pointing out)
        or is not an ``.ipynb`` file; ``FileNotFoundError`` listing the root's notebooks if ``must_exist``
        and there is no such file.
        """
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"notebook path must be a non-empty string, got {path!r}")
        if "\0" in path:
            raise ValueError(f"notebook path {path!r} contains a NUL character")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        real = candidate.resolve()
        if not real.is_relative_to(self.root):
            raise ValueError(
                f"notebook path {path!r} is outside the notebook root {self.root} "
                "(absolute paths elsewhere, '..' and symlinks pointing out are refused)"
            )
        if real.suffix != ".ipynb":
            raise ValueError(f"notebook path {path!r} is not an .ipynb file")
        if real.exists() and not real.is_file():
            raise ValueError(f"notebook path {path!r} is not a regular file")
        if must_exist and not real.is_file():
            found = self.list_notebooks()
            listing = ", ".join(found) if found else "none"
            more = " (list truncated)" if len(found) >= MAX_LISTED else ""
            raise FileNotFoundError(f"no notebook {path!r} under {self.root}; notebooks there: {listing}{more}")
        return real

    def relative(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix()

    def list_notebooks(self, limit: int = MAX_LISTED) -> list[str]:
        """Up to ``limit`` notebooks under the root (relative paths, hidden dirs and checkpoints skipped)."""
        found: list[str] = []
        for dirs_walked, (dirpath, dirnames, filenames) in enumerate(os.walk(self.root), start=1):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(".ipynb") and not name.startswith("."):
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
                    if len(found) >= limit:
                        return found
            if dirs_walked >= _MAX_DIRS_WALKED:
                break
        return found

    def _lock(self, real: Path) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(real, threading.Lock())

    # -- read ------------------------------------------------------------------------------------------
    def _load(self, real: Path) -> tuple[nbformat.NotebookNode, str]:
        data = real.read_bytes()
        return parse_notebook(data, self.relative(real)), version_of(data)

    def _state(self, real: Path, nb: nbformat.NotebookNode, version: str) -> dict[str, Any]:
        return notebook_state(self.relative(real), nb, version)

    def read(self, path: str) -> dict[str, Any]:
        """``{"path", "version", "kernel", "cells": [{"id", "cell_type", "source", "execution_count",
        "outputs": [summary]}]}`` (``None`` and ``[]`` for markdown and raw cells)."""
        real = self.resolve(path)
        nb, version = self._load(real)
        return self._state(real, nb, version)

    # -- edit ------------------------------------------------------------------------------------------
    def edit(self, path: str, version: str, operations: list[dict]) -> dict[str, Any]:
        """Apply ``operations`` to the notebook at ``version``, all or nothing, in one atomic write.

        Operations, applied in order:

        - ``{"op": "insert", "source", "cell_type"?: "code", "after": id | None}`` -- ``after: None`` inserts
          at the top; ``{"before": id}`` before a cell; neither ``after`` nor ``before``: at the end;
        - ``{"op": "replace", "cell_id", "source", "cell_type"?}`` -- clears a code cell's outputs;
        - ``{"op": "delete", "cell_id"}``.

        ``version`` is the token from :meth:`read`; ``StaleNotebookError`` if the file changed since.
        With ``version=""`` and a path that does not exist, a new notebook (python3) is created.
        ``KeyError`` for an unknown cell id (listing the valid ones), ``ValueError`` for a malformed
        operation. Returns the new state as :meth:`read` does, with the new version and
        ``"inserted": [ids]``.
        """
        if not isinstance(operations, list):
            raise ValueError(f"operations must be a list of objects, got {type(operations).__name__}")
        real = self.resolve(path, must_exist=False)
        with self._lock(real):
            if real.is_file():
                nb, current = self._load(real)
                if version != current:
                    hint = (
                        "it already exists" if not version else "it changed since you read it (someone else edited it)"
                    )
                    raise StaleNotebookError(
                        f"notebook {self.relative(real)!r} was not modified: {hint}. "
                        "Call notebook_read again and redo the edit against the new version."
                    )
            else:
                if version:
                    self.resolve(path)  # raises FileNotFoundError listing the existing notebooks
                nb = v4.new_notebook(metadata=copy.deepcopy(DEFAULT_METADATA))
                current = None
            inserted = _apply(nb, operations)
            text = serialize_notebook(nb)  # validates; raises before anything is written
            if current is not None and version_of(real.read_bytes()) != current:
                raise StaleNotebookError(
                    f"notebook {self.relative(real)!r} changed while it was being edited; "
                    "call notebook_read again and redo the edit."
                )
            real.parent.mkdir(parents=True, exist_ok=True)
            new_version = write_text_atomic(text, real)
        state = self._state(real, nb, new_version)
        state["inserted"] = inserted
        return state

    # -- run -------------------------------------------------------------------------------------------
    def run_cells(
        self,
        path: str,
        cell_ids: list[str] | None,
        execute: Callable[[str], Any],
        *,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Run code cells through ``execute(code)`` and write their outputs back into the notebook.

        ``cell_ids`` are run in the order given (``None``: every code cell, top to bottom). ``execute``
        returns an object with ``outputs`` (nbformat v4 output dicts), ``execution_count`` and ``status``
        (``"ok"``, ``"error"``, ``"aborted"``, ``"timeout"``, ...); the run stops after the first cell
        whose status is not ``"ok"``. If ``version`` is given and the file is not at that version,
        ``StaleNotebookError`` before anything runs.

        Outputs are merged by cell id into the file as it is on disk when the run ends, so edits made
        meanwhile to other cells survive; a cell that was deleted or whose source changed meanwhile keeps
        its new content and is listed in ``"not_written"``. If ``execute`` raises (e.g. the kernel died),
        the outputs of the cells that finished are still written, then the exception propagates.

        Returns ``{"path", "version", "results": [{"cell_id", "status", "execution_count", "outputs"}],
        "not_written": [ids]}``.
        """
        real = self.resolve(path)
        nb, current = self._load(real)
        if version is not None and version != current:
            raise StaleNotebookError(
                f"notebook {self.relative(real)!r} changed since you read it; call notebook_read again."
            )
        by_id = {c["id"]: c for c in nb.cells}
        if cell_ids is None:
            to_run = [c for c in nb.cells if c["cell_type"] == "code"]
        else:
            if isinstance(cell_ids, str) or not isinstance(cell_ids, list):
                raise ValueError("cell_ids must be a list of cell ids (or null for all code cells)")
            _check_ids(cell_ids, by_id)
            not_code = [cid for cid in cell_ids if by_id[cid]["cell_type"] != "code"]
            if not_code:
                raise ValueError(f"cells {not_code} are not code cells; only code cells can be run")
            to_run = [by_id[cid] for cid in cell_ids]

        results: list[dict[str, Any]] = []
        ran: dict[str, tuple[str, list[dict], int | None]] = {}
        try:
            for cell in to_run:
                source = _text(cell.get("source", ""))
                res = execute(source)
                outputs = [dict(o) for o in (getattr(res, "outputs", None) or [])]
                status = getattr(res, "status", "ok")
                count = getattr(res, "execution_count", None)
                results.append({"cell_id": cell["id"], "status": status, "execution_count": count, "outputs": outputs})
                ran[cell["id"]] = (source, outputs, count)
                if status != "ok":
                    break
        except BaseException as failure:  # the kernel died, the call was cancelled: what finished is still written
            self._write_outputs(real, ran, current, failure)
            raise
        new_version, not_written = self._write_outputs(real, ran, current, None)
        return {
            "path": self.relative(real),
            "version": new_version,
            "results": results,
            "not_written": not_written,
        }

    def _write_outputs(
        self,
        real: Path,
        ran: dict[str, tuple[str, list[dict], int | None]],
        current: str,
        failure: BaseException | None,
    ) -> tuple[str, list[str]]:
        """Merge the outputs of the cells that ran into the notebook as it is on disk now: its version then, and
        the cells not written (deleted, or their source changed meanwhile). A failed write raises ``failure``
        (the run's own), when there is one, from the write's error."""
        not_written: list[str] = []
        if not ran:
            return current, not_written
        with self._lock(real):
            fresh, _ = self._load(real)
            fresh_by_id = {c["id"]: c for c in fresh.cells}
            for cid, (source, outputs, count) in ran.items():
                cell = fresh_by_id.get(cid)
                if cell is None or cell["cell_type"] != "code" or _text(cell.get("source", "")) != source:
                    not_written.append(cid)
                    continue
                cell["outputs"] = [nbformat.from_dict(copy.deepcopy(o)) for o in outputs]
                cell["execution_count"] = count
            if len(not_written) == len(ran):
                return current, not_written
            try:
                return write_notebook_atomic(fresh, real), not_written
            except Exception as exc:
                if failure is None:
                    raise
                raise failure from exc


def _check_ids(ids: Iterable[str], by_id: dict[str, Any]) -> None:
    unknown = [cid for cid in ids if cid not in by_id]
    if unknown:
        valid = list(by_id)
        shown = ", ".join(valid[:100]) + (" ..." if len(valid) > 100 else "")
        raise KeyError(f"unknown cell id(s) {unknown}; valid ids: {shown or 'none (the notebook is empty)'}")


def _new_cell(cell_type: str, source: str, metadata: dict | None, cell_id: str | None = None) -> Any:
    kwargs: dict[str, Any] = {"metadata": nbformat.from_dict(copy.deepcopy(metadata or {}))}
    if cell_id is not None:
        kwargs["id"] = cell_id
    factory = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell, "raw": v4.new_raw_cell}[cell_type]
    return factory(source=source, **kwargs)


def apply_operations(nb: nbformat.NotebookNode, operations: list[dict]) -> list[str]:
    """Apply ``notebook_edit`` operations (see :meth:`NotebookFiles.edit`) to ``nb`` in place, validating each
    (``ValueError`` naming the operation, ``KeyError`` for an unknown cell id); returns the inserted ids.
    The Jupyter extension applies them to a copy of an open notebook's shared document this way."""
    return _apply(nb, operations)


def _apply(nb: nbformat.NotebookNode, operations: list[dict]) -> list[str]:
    """Apply edit operations to ``nb`` in place (the caller discards ``nb`` on error). Returns the ids of
    inserted cells."""
    inserted: list[str] = []
    for n, op in enumerate(operations):
        where = f"operations[{n}]"
        if not isinstance(op, dict):
            raise ValueError(f"{where} must be an object, got {type(op).__name__}")
        kind = op.get("op")
        if kind not in _OPS:
            raise ValueError(f"{where}.op must be one of {sorted(_OPS)}, got {kind!r}")
        required, optional = _OPS[kind]
        missing = sorted(required - op.keys())
        if missing:
            raise ValueError(f"{where} ({kind}) is missing field(s) {missing}")
        extra = sorted(op.keys() - required - optional)
        if extra:
            raise ValueError(f"{where} ({kind}) has unknown field(s) {extra}")
        if "source" in op and not isinstance(op["source"], str):
            raise ValueError(f"{where}.source must be a string")
        cell_type = op.get("cell_type")
        if cell_type is not None and cell_type not in CELL_TYPES:
            raise ValueError(f"{where}.cell_type must be one of {list(CELL_TYPES)}, got {cell_type!r}")
        if "metadata" in op and not isinstance(op["metadata"], dict):
            raise ValueError(f"{where}.metadata must be an object")
        ids = [c["id"] for c in nb.cells]
        by_id = dict(zip(ids, nb.cells, strict=True))

        if kind == "insert":
            if "after" in op and "before" in op:
                raise ValueError(f"{where} has both 'after' and 'before'; give one")
            if "before" in op:
                _check_ids([op["before"]], by_id)
                index = ids.index(op["before"])
            elif "after" in op:
                if op["after"] is None:
                    index = 0
                else:
                    _check_ids([op["after"]], by_id)
                    index = ids.index(op["after"]) + 1
            else:
                index = len(ids)
            cell = _new_cell(cell_type or "code", op["source"], op.get("metadata"))
            while cell["id"] in by_id:  # astronomically unlikely
                cell["id"] = generate_corpus_id()
            nb.cells.insert(index, cell)
            inserted.append(cell["id"])
        elif kind == "replace":
            cid = op["cell_id"]
            _check_ids([cid], by_id)
            old = by_id[cid]
            metadata = op["metadata"] if "metadata" in op else old.get("metadata", {})
            new_type = cell_type or old["cell_type"]
            new = _new_cell(new_type, op["source"], metadata, cell_id=cid)
            if new_type != "code" and new_type == old["cell_type"] and "attachments" in old:
                new["attachments"] = copy.deepcopy(old["attachments"])
            nb.cells[ids.index(cid)] = new
        else:  # delete
            cid = op["cell_id"]
            _check_ids([cid], by_id)
            del nb.cells[ids.index(cid)]
    return inserted
