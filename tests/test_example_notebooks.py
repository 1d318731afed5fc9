"""Every example notebook in notebooks/ runs top to bottom with nbclient on a real kernel (its asserts pass),
leaves no nbmcp server behind, and keeps outputs that are current: what it shows on GitHub is what it prints.

The notebooks are saved executed. After changing one (or nbmcp's output), refresh them all with

    .venv/bin/python tests/test_example_notebooks.py --refresh

Every code cell's text output (streams, ``text/plain``, errors) is compared with a fresh run after
:func:`normalise` replaces what must vary (ports, ids, temporary paths); a cell tagged ``varies`` is not compared.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
REFRESH = f"{sys.executable} tests/test_example_notebooks.py --refresh"

# What differs between two honest runs: every such pattern and what it becomes.
VARYING = [
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"--kernel-id [\w-]+"), "--kernel-id <id>"),
    (re.compile(r"nbmcp-[\w-]+…?\.json"), "nbmcp-<id>.json"),
    (re.compile(r"(?:~|(?:/[\w.@+-]+)*)/runtime/"), "<runtime>/"),
    (re.compile(r"(kernel \w+ )[0-9a-f]{8}\b"), r"\1<id>"),  # nbmcp serve's kernel, by its short id
    (re.compile(r"\((\w+), (?:starting|idle|busy)\)"), r"(\1, <state>)"),  # a kernel's execution state
    (re.compile(r"(?:/[\w.@+-]+)+/bin/nbmcp\b"), "<env>/bin/nbmcp"),  # `nbmcp config`: the checkout's own script
]


def normalise(text: str) -> str:
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


def run_notebook(path: Path, workdir: Path, runtime: Path | None = None) -> Any:
    """Execute a notebook top to bottom in a fresh kernel started in ``workdir``, as JupyterLab starts one
    (``kernel-<uuid>.json``); the kernel and its nbmcp server write their files to ``runtime`` (default: Jupyter's)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    if runtime is not None:
        os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    km = AsyncKernelManager(kernel_name="python3", connection_file=str(runtime / f"kernel-{uuid.uuid4()}.json"))
    try:
        # record_timing=False: no wall-clock timestamps in the saved cells' metadata. cleanup_kc=True: shut the
        # kernel down at the end although we made its manager (nbclient only cleans up managers it made).
        client = NotebookClient(
            nb, km=km, timeout=180, record_timing=False, resources={"metadata": {"path": str(workdir)}}
        )
        client.execute(cleanup_kc=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def text_outputs(cell: Any) -> list[tuple[str, str]]:
    """A code cell's outputs as (kind, normalised text); consecutive stream chunks are joined (their split varies)."""
    found: list[tuple[str, str]] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            kind, text = f"stream:{output.name}", output.text
            if found and found[-1][0] == kind:
                found[-1] = (kind, found[-1][1] + text)
                continue
        elif output.output_type == "error":
            kind, text = "error", f"{output.ename}: {output.evalue}"
        else:
            kind, text = output.output_type, output.get("data", {}).get("text/plain", "")
        found.append((kind, text))
    return [(kind, normalise(text)) for kind, text in found]


def stale_cells(kept: Any, fresh: Any) -> list[str]:
    """Cells whose kept outputs differ from a fresh run's (cells tagged ``varies`` excepted)."""
    stale = []
    for old, new in zip(kept.cells, fresh.cells, strict=True):
        if old.cell_type != "code" or "varies" in old.metadata.get("tags", []):
            continue
        if text_outputs(old) != text_outputs(new):
            stale.append(f"cell {old.id}: kept {text_outputs(old)!r}\n  fresh {text_outputs(new)!r}")
    return stale


def test_the_examples_are_there() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01-quickstart.ipynb",
        "02-live-data.ipynb",
        "03-assistant-session.ipynb",
        "04-jupyter-server.ipynb",
        "05-big-data.ipynb",
        "06-r-kernel.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_saved_valid_and_executed_in_order(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)  # includes cell ids (nbformat >= 4.5)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("id") for c in nb.cells)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"run {REFRESH}"
    assert all(c.outputs for c in code if "no-output" not in c.metadata.get("tags", [])), (
        f"{path.name}: a cell shows nothing; run {REFRESH}"
    )
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], f"{path.name} keeps an error"
    assert not any("execution" in c.metadata for c in code), "timestamps in the metadata make every save differ"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_its_kept_outputs_are_current(path: Path, tmp_path: Path) -> None:
    kept = nbformat.read(path, as_version=4)
    (tmp_path / "runtime").mkdir()
    fresh = run_notebook(path, tmp_path, runtime=tmp_path / "runtime")
    errors = [o for c in fresh.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert all(c.execution_count for c in fresh.cells if c.cell_type == "code")
    # No nbmcp server left listening (connection files are removed on unload).
    leftovers = [json.loads(p.read_text()).get("url") for p in (tmp_path / "runtime").glob("nbmcp-*.json")]
    assert not leftovers, f"{path.name} left nbmcp servers running: {leftovers}"
    stale = stale_cells(kept, fresh)
    assert not stale, f"{path.name}: kept outputs are stale; run {REFRESH}\n" + "\n".join(stale)


def refresh(paths: list[Path]) -> None:
    """Run each notebook and save it with its outputs (what GitHub and Binder show before anything runs)."""
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="nbmcp-notebook-") as workdir:
            nb = run_notebook(path, Path(workdir))
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"refreshed {path.name}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--refresh"]:
        sys.exit(f"usage: {REFRESH} [NOTEBOOK ...]")
    chosen = [Path(p).resolve() for p in sys.argv[2:]] or NOTEBOOKS
    refresh(chosen)
