"""The assistant's code as live cells in the notebook the human has open (JupyterLab real-time collaboration).

With ``jupyter-collaboration`` installed, an open notebook has a shared document (a ``jupyter_ydoc``
``YNotebook`` over a ``pycrdt`` document) in this server process, kept by ``jupyter_server_ydoc``; every
browser tab showing the notebook is a client of it, and the collaboration layer saves it to the file.
Code an assistant runs through ``{base_url}nbmcp/mcp`` is appended to that document as a code cell marked
``metadata.nbmcp.author == "assistant"``, its outputs stream into the cell as they arrive, and the human
sees it at once (and can delete it like any cell). Edits go through the CRDT, never to the file behind the
document's back, so the human typing in another cell at the same time loses nothing.

The notebook tools do the same for an open notebook: ``notebook_read`` reads the shared document,
``notebook_edit`` applies its operations to the document's cells (sources changed granularly, so the
human's cursor and concurrent typing elsewhere survive) and ``notebook_run`` streams outputs into the
existing cells; the cells the assistant inserted, changed or ran are marked in ``metadata.nbmcp``.

Without the collaboration layer, or with the notebook not open, or closed while the cell ran (its room
gone), the execution goes to the ``<notebook>.assistant.ipynb`` recording instead: never lost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..serve import ExecutionRun, KernelHandle, apply_operations, notebook_state

__all__ = [
    "LiveCell",
    "LiveKernelHandle",
    "SharedNotebooks",
    "assistant_metadata",
    "edit_document",
    "read_document",
    "run_document_cells",
]

log = logging.getLogger(__name__)

#: The key of ``jupyter_server_ydoc``'s extension app in the Jupyter Server's web app settings.
YDOC_SETTING = "jupyter_server_ydoc"


def assistant_metadata(kernel_id: str | None, **extra: Any) -> dict[str, Any]:
    """The cell metadata that marks a cell as the assistant's."""
    return {"nbmcp": {"author": "assistant", "kernel_id": kernel_id, "started": time.time(), **extra}}


class SharedNotebooks:
    """The shared documents of open notebooks, through ``jupyter_server_ydoc``'s public ``get_document``."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        # the Jupyter Server's web app settings: extensions register there when they load, maybe after us
        self._settings = settings

    @property
    def available(self) -> bool:
        """Whether real-time collaboration is loaded in this server."""
        return self._settings.get(YDOC_SETTING) is not None

    async def document(self, path: str) -> Any | None:
        """The live ``YNotebook`` of ``path`` (relative to the server root) if it is open, else None.

        Never opens a room itself: a room nobody has open would not be cleaned up, and the recording
        beside the notebook is the place for what ran while nobody looked.
        """
        ydoc = self._settings.get(YDOC_SETTING)
        if ydoc is None or not path.endswith(".ipynb"):
            return None
        try:
            return await ydoc.get_document(path=path, content_type="notebook", file_format="json", copy=False)
        except Exception:  # a collaboration layer failing must not fail the execution: record to the file
            log.warning("nbmcp: the shared document of %s is not available", path, exc_info=True)
            return None


class LiveCell(ExecutionRun):
    """One execution shown as a cell of an open notebook: inserted when it starts, outputs as they come."""

    def __init__(
        self,
        handle: LiveKernelHandle,
        code: str,
        path: str,
        doc: Any,
        notebooks: SharedNotebooks,
        kernel_id: str,
        ycell: Any | None = None,
    ) -> None:
        """A new cell at the end of the document, or ``ycell``, an existing cell run again (``notebook_run``)."""
        super().__init__(handle, code)
        self.path = path
        self.doc = doc
        self.notebooks = notebooks
        self._sent: list[dict[str, Any]] = []  # the outputs as last written to the cell
        if ycell is not None:
            self.cell_id = ycell["id"]
            with doc.ydoc.transaction():
                ycell["outputs"].clear()
                ycell["execution_count"] = None
                ycell["execution_state"] = "running"
                nbmcp = dict(ycell["metadata"].get("nbmcp") or {})
                ycell["metadata"]["nbmcp"] = {**nbmcp, "ran_by": "assistant", "kernel_id": kernel_id}
            self.ycell = ycell
            self.on_outputs = self._sync
            return
        self.cell_id = uuid.uuid4().hex[:8]
        ycell = doc.create_ycell(
            {
                "id": self.cell_id,
                "cell_type": "code",
                "source": code,
                "metadata": assistant_metadata(kernel_id),
                "outputs": [],
                "execution_count": None,
            }
        )
        with doc.ydoc.transaction():
            doc.ycells.append(ycell)
            ycell["execution_state"] = "running"  # JupyterLab shows [*] while it runs
        self.ycell = ycell
        self.on_outputs = self._sync  # every output kind, as each arrives (stream text appended in place)

    def _sync(self, outputs: list[dict[str, Any]]) -> None:
        """Bring the cell's outputs up to ``outputs``: append stream text, add or replace what changed."""
        from pycrdt import Map, Text

        def ymap(output: dict[str, Any]) -> Any:
            output = copy.deepcopy(dict(output))
            if output.get("output_type") == "stream":
                output["text"] = Text(output.get("text", ""))
            return Map(output)

        try:
            youtputs = self.ycell["outputs"]
            with self.doc.ydoc.transaction():
                if len(youtputs) != len(self._sent):  # someone cleared the outputs meanwhile: start over
                    youtputs.clear()
                    self._sent = []
                for index, output in enumerate(outputs):
                    if index >= len(self._sent):
                        youtputs.append(ymap(output))
                        self._sent.append(copy.deepcopy(dict(output)))
                        continue
                    sent = self._sent[index]
                    if sent == output:
                        continue
                    text, old = output.get("text"), sent.get("text")
                    if (
                        output.get("output_type") == sent.get("output_type") == "stream"
                        and output.get("name") == sent.get("name")
                        and isinstance(text, str)
                        and isinstance(old, str)
                        and text.startswith(old)
                    ):
                        ytext = youtputs[index]["text"]
                        ytext.insert(len(ytext), text[len(old) :])  # streaming: the new text only
                    else:
                        youtputs[index] = ymap(output)
                    self._sent[index] = copy.deepcopy(dict(output))
                while len(youtputs) > len(outputs):  # a clear_output shortened them
                    del youtputs[len(youtputs) - 1]
                    self._sent.pop()
        except Exception:  # the human deleted the cell, or the document is gone: finish() decides
            log.debug("nbmcp: live outputs of cell %s not updated", self.cell_id, exc_info=True)

    async def finish(self, outcome: Any) -> None:
        if await self.notebooks.document(self.path) is not self.doc:
            # the notebook was closed (its room is gone) while the cell ran: keep it in the recording
            log.info("nbmcp: %s was closed while the assistant ran a cell; recorded beside it", self.path)
            self.handle.record(self.code, outcome)
            return
        self._sync(outcome.outputs)
        meta = {"status": outcome.status} if outcome.status not in (None, "ok") else {}
        try:
            with self.doc.ydoc.transaction():
                self.ycell["execution_count"] = outcome.execution_count
                self.ycell["execution_state"] = "idle"
                if meta:
                    nbmcp = dict(self.ycell["metadata"].get("nbmcp") or {})
                    self.ycell["metadata"]["nbmcp"] = {**nbmcp, **meta}
        except Exception:
            log.warning("nbmcp: could not finish live cell %s in %s", self.cell_id, self.path, exc_info=True)

    async def fail(self, error: BaseException) -> None:
        try:
            with self.doc.ydoc.transaction():
                self.ycell["execution_state"] = "idle"
                nbmcp = dict(self.ycell["metadata"].get("nbmcp") or {})
                self.ycell["metadata"]["nbmcp"] = {**nbmcp, "status": f"failed: {error}"[:300]}
        except Exception:
            log.debug("nbmcp: live cell %s not marked failed", self.cell_id, exc_info=True)


class LiveKernelHandle(KernelHandle):
    """A Jupyter kernel whose executions appear live in the open notebook, else in the recording."""

    def __init__(
        self,
        handle: KernelHandle,
        kernel_id: str,
        notebooks: SharedNotebooks,
        paths: Callable[[], Awaitable[list[str]]],
    ) -> None:
        super().__init__(handle.session, handle.recorder)
        self.kernel_id = kernel_id
        self.notebooks = notebooks
        self._paths = paths  # the notebooks open on this kernel now (they change as sessions come and go)

    async def begin(self, code: str) -> ExecutionRun:
        if self.notebooks.available:
            for path in await self._paths():
                doc = await self.notebooks.document(path)
                if doc is not None:
                    try:
                        return LiveCell(self, code, path, doc, self.notebooks, self.kernel_id)
                    except Exception:
                        log.warning("nbmcp: could not insert a cell into %s", path, exc_info=True)
        return await super().begin(code)


# --------------------------------------------------------------------------------------------------
# the notebook tools on an open notebook's shared document
# --------------------------------------------------------------------------------------------------


def _as_notebook(doc: Any) -> Any:
    """The shared document's content now, as an nbformat notebook (a copy)."""
    import nbformat

    data = doc.get()
    return nbformat.from_dict(
        {"cells": data.get("cells", []), "metadata": data.get("metadata", {}), "nbformat": 4, "nbformat_minor": 5}
    )


def document_version(doc: Any) -> str:
    """A token for the document's cells now (ids, types, sources): it changes whenever anyone edits."""
    cells = [(c.get("id"), c.get("cell_type"), c.get("source")) for c in doc.get().get("cells", [])]
    return "live-" + hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def read_document(doc: Any, path: str) -> dict[str, Any]:
    """``notebook_read`` of an open notebook: what the human sees now, unsaved edits included."""
    state = notebook_state(path, _as_notebook(doc), document_version(doc))
    state["live"] = True
    return state


def _index(doc: Any, cell_id: str) -> int | None:
    for index, ycell in enumerate(doc.ycells):
        if ycell.get("id") == cell_id:
            return index
    return None


def edit_document(doc: Any, path: str, operations: list[dict[str, Any]], kernel_id: str | None) -> dict[str, Any]:
    """``notebook_edit`` of an open notebook, through its shared document (never the file behind it).

    The operations are checked and applied to a copy first (all or nothing, the errors of
    ``nbmcp serve``'s ``notebook_edit``), then carried into the document in one transaction: deleted
    cells removed, replaced sources changed granularly (``YNotebook.set_cell``), new cells inserted where
    the copy has them. Concurrent edits merge in the CRDT, so no version check: cells are named by id.
    """
    if not isinstance(operations, list):
        raise ValueError(f"operations must be a list of objects, got {type(operations).__name__}")
    nb = _as_notebook(doc)
    inserted = apply_operations(nb, operations)  # raises before the document is touched
    final = {cell["id"]: json.loads(json.dumps(cell)) for cell in nb.cells}
    replaced = {op["cell_id"] for op in operations if op.get("op") == "replace" and op["cell_id"] in final}
    replaced -= set(inserted)  # inserted, then replaced: inserted with its final content
    mark = assistant_metadata(kernel_id)["nbmcp"]
    with doc.ydoc.transaction():
        for index in reversed(range(len(doc.ycells))):
            if doc.ycells[index].get("id") not in final:
                del doc.ycells[index]
        for cell_id in replaced:
            index, new = _index(doc, cell_id), final[cell_id]
            if index is None:  # cannot happen: it is in the copy, made from the document in this same tick
                continue
            new["metadata"] = {**new.get("metadata", {}), "nbmcp": {**mark, "edit": "replace"}}
            ycell = doc.ycells[index]
            if ycell["cell_type"] != new["cell_type"]:
                doc.set_cell(index, new)
                continue
            doc.set_cell(index, source=new["source"])  # only the changed characters
            ycell["metadata"]["nbmcp"] = new["metadata"]["nbmcp"]
            if new["cell_type"] == "code":  # as in the file: a replaced code cell's outputs are cleared
                ycell["outputs"].clear()
                ycell["execution_count"] = None
        for index, cell_id in enumerate(final):  # the copy's order: earlier cells are in place already
            if cell_id in inserted:
                new = final[cell_id]
                new["metadata"] = {**new.get("metadata", {}), "nbmcp": mark}
                doc.ycells.insert(index, doc.create_ycell(new))
    state = read_document(doc, path)
    state["inserted"] = inserted
    return state


async def run_document_cells(
    handle: LiveKernelHandle, doc: Any, path: str, cell_ids: list[str] | None, timeout: float | None
) -> dict[str, Any]:
    """``notebook_run`` of an open notebook: each cell runs in the notebook's kernel with its outputs
    streaming into that cell of the shared document; stops after the first cell that is not ``ok``.

    Returns what ``nbmcp serve``'s ``run_cells`` does: ``{"path", "version", "results", "not_written"}``
    (``not_written``: cells deleted meanwhile, so not run).
    """
    cells = {c["id"]: c for c in doc.get().get("cells", [])}
    if cell_ids is None:
        cell_ids = [cid for cid, c in cells.items() if c.get("cell_type") == "code"]
    elif isinstance(cell_ids, str) or not isinstance(cell_ids, list):
        raise ValueError("cell_ids must be a list of cell ids (or null for all code cells)")
    unknown = [cid for cid in cell_ids if cid not in cells]
    if unknown:
        raise KeyError(f"unknown cell id(s) {unknown}; valid ids: {', '.join(list(cells)[:100]) or 'none'}")
    not_code = [cid for cid in cell_ids if cells[cid].get("cell_type") != "code"]
    if not_code:
        raise ValueError(f"cells {not_code} are not code cells; only code cells can be run")
    results: list[dict[str, Any]] = []
    not_written: list[str] = []
    for cell_id in cell_ids:
        index = _index(doc, cell_id)
        if index is None:  # the human deleted it while earlier cells ran
            not_written.append(cell_id)
            continue
        ycell = doc.ycells[index]
        code = str(ycell["source"])
        run = LiveCell(handle, code, path, doc, handle.notebooks, handle.kernel_id, ycell=ycell)
        try:
            outcome = await handle.session.execute(code, timeout=timeout, on_outputs=run.on_outputs)
        except BaseException as exc:
            await run.fail(exc)
            raise
        await run.finish(outcome)
        status = outcome.status
        results.append(
            {
                "cell_id": cell_id,
                "status": status,
                "execution_count": outcome.execution_count,
                "outputs": outcome.outputs,
            }
        )
        if status != "ok":
            break
    return {"path": path, "version": document_version(doc), "results": results, "not_written": not_written}
