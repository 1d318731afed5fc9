"""The assistant's code as live cells in the notebook the human has open (JupyterLab real-time collaboration).

With ``jupyter-collaboration`` installed, an open notebook has a shared document (a ``jupyter_ydoc``
``YNotebook`` over a ``pycrdt`` document) in this server process, kept by ``jupyter_server_ydoc``; every
browser tab showing the notebook is a client of it, and the collaboration layer saves it to the file.
Code an assistant runs through ``{base_url}nbmcp/mcp`` is appended to that document as a code cell marked
``metadata.nbmcp.author == "assistant"``, its outputs stream into the cell as they arrive, and the human
sees it at once (and can delete it like any cell). Edits go through the CRDT, never to the file behind the
document's back, so the human typing in another cell at the same time loses nothing.

Without the collaboration layer, or with the notebook not open, or closed while the cell ran (its room
gone), the execution goes to the ``<notebook>.assistant.ipynb`` recording instead: never lost.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..serve import ExecutionRun, KernelHandle

__all__ = ["LiveCell", "LiveKernelHandle", "SharedNotebooks", "assistant_metadata"]

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
        self, handle: LiveKernelHandle, code: str, path: str, doc: Any, notebooks: SharedNotebooks, kernel_id: str
    ) -> None:
        super().__init__(handle, code)
        self.path = path
        self.doc = doc
        self.notebooks = notebooks
        self._sent: list[dict[str, Any]] = []  # the outputs as last written to the cell
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
