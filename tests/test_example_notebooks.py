"""Every example notebook in notebooks/ runs top to bottom with nbclient on a real kernel (its asserts pass),
and leaves no nbmcp server or kernel behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_examples_are_there() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01-quickstart.ipynb",
        "02-live-data.ipynb",
        "03-assistant-session.ipynb",
        "04-jupyter-server.ipynb",
    ]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)  # the kernel and its nbmcp server write here
    try:
        client = NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    # No nbmcp server left listening (connection files are removed on unload) and no stray kernel files.
    leftovers = [json.loads(p.read_text()).get("url") for p in runtime.glob("nbmcp-*.json")]
    assert not leftovers, f"{path.name} left nbmcp servers running: {leftovers}"
