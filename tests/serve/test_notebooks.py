"""Notebook files for ``nbmcp serve``: read, edit (with staleness), confinement, run_cells on a real kernel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import v4

from nbmcp.exceptions import StaleNotebookError
from nbmcp.serve.notebook.notebooks import NotebookFiles


@dataclass
class Outcome:
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    status: str = "ok"


class KernelExecute:
    """``execute(code)`` over a real kernel's BlockingKernelClient, as the session will provide it."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.calls: list[str] = []

    def __call__(self, code: str) -> Outcome:
        self.calls.append(code)
        out = Outcome()

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                out.outputs.append(v4.output_from_msg(msg))
            elif msg["msg_type"] == "clear_output":
                out.outputs.clear()

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=60)
        out.execution_count = reply["content"].get("execution_count")
        out.status = reply["content"]["status"]
        return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_notebook(path: Path) -> nbformat.NotebookNode:
    nb = v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        v4.new_markdown_cell("# Title", id="md1"),
        v4.new_code_cell(
            "print('x' * 500)",
            id="c1",
            execution_count=1,
            outputs=[v4.new_output("stream", name="stdout", text="x" * 500 + "\n")],
        ),
        v4.new_code_cell(
            "df",
            id="c2",
            execution_count=2,
            outputs=[
                v4.new_output(
                    "execute_result",
                    data={"text/plain": "table", "text/html": "<table/>"},
                    execution_count=2,
                )
            ],
        ),
        v4.new_code_cell("1/0", id="c3", outputs=[v4.new_output("error", ename="ZeroDivisionError", evalue="oops")]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return nb


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    make_notebook(r / "a.ipynb")
    return r


@pytest.fixture
def files(root: Path) -> NotebookFiles:
    return NotebookFiles(root)


def test_read_returns_ids_version_and_short_output_summaries(files: NotebookFiles, root: Path) -> None:
    state = files.read("a.ipynb")
    assert state["path"] == "a.ipynb"
    assert state["version"] == sha(root / "a.ipynb")
    assert state["kernel"] == "python3"
    cells = state["cells"]
    assert [c["id"] for c in cells] == ["md1", "c1", "c2", "c3"]
    assert cells[0] == {
        "id": "md1",
        "cell_type": "markdown",
        "source": "# Title",
        "execution_count": None,
        "outputs": [],
    }
    stream = cells[1]["outputs"][0]
    assert stream["output_type"] == "stream" and stream["name"] == "stdout"
    assert stream["text"].startswith("x" * 200) and len(stream["text"]) <= 201
    assert cells[1]["execution_count"] == 1
    assert cells[2]["outputs"] == [
        {"output_type": "execute_result", "mime": ["text/html", "text/plain"], "text": "table"}
    ]
    assert cells[3]["outputs"] == [{"output_type": "error", "text": "ZeroDivisionError: oops"}]
    # Absolute paths inside the root are accepted and reported relative to it.
    assert files.read(str(root / "a.ipynb"))["path"] == "a.ipynb"


def test_edit_insert_replace_delete(files: NotebookFiles, root: Path) -> None:
    v0 = files.read("a.ipynb")["version"]
    state = files.edit(
        "a.ipynb",
        v0,
        [
            {"op": "insert", "source": "import math", "after": None},
            {"op": "insert", "source": "## Section", "cell_type": "markdown", "after": "c1"},
            {"op": "insert", "source": "before c3", "before": "c3"},
            {"op": "insert", "source": "the end"},
            {"op": "replace", "cell_id": "c2", "source": "df.head()"},
            {"op": "replace", "cell_id": "md1", "source": "# New title"},
            {"op": "delete", "cell_id": "c3"},
        ],
    )
    top, section, before_c3, end = state["inserted"]
    ids = [c["id"] for c in state["cells"]]
    assert ids == [top, "md1", "c1", section, "c2", before_c3, end]
    assert state["version"] == sha(root / "a.ipynb") != v0

    nb = nbformat.read(root / "a.ipynb", as_version=4)
    nbformat.validate(nb)
    by_id = {c.id: c for c in nb.cells}
    assert by_id[top].source == "import math" and by_id[top].cell_type == "code"
    assert by_id[section].cell_type == "markdown"
    assert by_id["c2"].source == "df.head()"
    assert by_id["c2"].outputs == [] and by_id["c2"].execution_count is None  # replace clears outputs
    assert by_id["c1"].outputs[0].text.startswith("xxx")  # untouched cells keep theirs
    assert by_id["md1"].source == "# New title"
    assert "c3" not in by_id

    # Change a cell's type.
    state = files.edit(
        "a.ipynb", state["version"], [{"op": "replace", "cell_id": "c1", "source": "*md*", "cell_type": "markdown"}]
    )
    c1 = next(c for c in state["cells"] if c["id"] == "c1")
    assert c1 == {"id": "c1", "cell_type": "markdown", "source": "*md*", "execution_count": None, "outputs": []}
    nbformat.validate(nbformat.read(root / "a.ipynb", as_version=4))


def test_edit_refused_when_file_changed_since_read(files: NotebookFiles, root: Path) -> None:
    version = files.read("a.ipynb")["version"]
    # Someone else (e.g. the human in JupyterLab) saves the notebook.
    nb = nbformat.read(root / "a.ipynb", as_version=4)
    nb.cells[1].source = "print('human edit')"
    nbformat.write(nb, root / "a.ipynb")
    theirs = (root / "a.ipynb").read_bytes()

    with pytest.raises(StaleNotebookError, match="notebook_read"):
        files.edit("a.ipynb", version, [{"op": "delete", "cell_id": "c1"}])
    assert (root / "a.ipynb").read_bytes() == theirs

    fresh = files.read("a.ipynb")
    state = files.edit("a.ipynb", fresh["version"], [{"op": "delete", "cell_id": "c2"}])
    assert [c["source"] for c in state["cells"] if c["id"] == "c1"] == ["print('human edit')"]


def test_edit_is_all_or_nothing(files: NotebookFiles, root: Path) -> None:
    version = files.read("a.ipynb")["version"]
    before = (root / "a.ipynb").read_bytes()
    good = {"op": "insert", "source": "fine", "after": "c1"}
    with pytest.raises(KeyError) as err:
        files.edit("a.ipynb", version, [good, {"op": "delete", "cell_id": "nope"}])
    assert "nope" in str(err.value) and "md1" in str(err.value) and "c3" in str(err.value)
    with pytest.raises(ValueError, match="cell_id"):
        files.edit("a.ipynb", version, [good, {"op": "replace", "source": "x"}])
    with pytest.raises(ValueError, match="sourc"):
        files.edit("a.ipynb", version, [good, {"op": "insert", "sourc": "typo"}])
    with pytest.raises(ValueError, match="cell_type"):
        files.edit("a.ipynb", version, [good, {"op": "insert", "source": "x", "cell_type": "heading"}])
    with pytest.raises(ValueError, match="op"):
        files.edit("a.ipynb", version, [good, {"op": "move", "cell_id": "c1"}])
    # An op referring to a cell deleted by an earlier op of the same edit fails the whole edit.
    with pytest.raises(KeyError):
        files.edit(
            "a.ipynb", version, [{"op": "delete", "cell_id": "c1"}, {"op": "insert", "source": "x", "after": "c1"}]
        )
    assert (root / "a.ipynb").read_bytes() == before
    assert files.read("a.ipynb")["version"] == version


def test_edit_creates_a_new_notebook(files: NotebookFiles, root: Path) -> None:
    state = files.edit("sub/dir/new.ipynb", "", [{"op": "insert", "source": "print('hi')"}])
    assert state["path"] == "sub/dir/new.ipynb"
    nb = nbformat.read(root / "sub/dir/new.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3" and state["kernel"] == "python3"
    assert [c.source for c in nb.cells] == ["print('hi')"]
    with pytest.raises(StaleNotebookError, match="already exists"):
        files.edit("sub/dir/new.ipynb", "", [{"op": "insert", "source": "again"}])
    with pytest.raises(FileNotFoundError, match=r"a\.ipynb"):  # lists what exists
        files.edit("missing.ipynb", "deadbeef", [])


def test_notebook_without_ids_gets_stable_ids_until_written(files: NotebookFiles, root: Path) -> None:
    old = v4.new_notebook(cells=[v4.new_code_cell("a = 1"), v4.new_markdown_cell("text")])
    old.nbformat_minor = 4
    for cell in old.cells:
        del cell["id"]
    nbformat.write(old, root / "old.ipynb")
    first, second = files.read("old.ipynb"), files.read("old.ipynb")
    assert [c["id"] for c in first["cells"]] == [c["id"] for c in second["cells"]] == ["cell-0", "cell-1"]
    state = files.edit("old.ipynb", first["version"], [{"op": "replace", "cell_id": "cell-1", "source": "new"}])
    nb = nbformat.read(root / "old.ipynb", as_version=nbformat.NO_CONVERT)
    assert nb.nbformat_minor == 5 and [c.id for c in nb.cells] == ["cell-0", "cell-1"]
    assert [c["source"] for c in state["cells"]] == ["a = 1", "new"]


def test_paths_are_confined_to_the_root(files: NotebookFiles, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.ipynb"
    make_notebook(outside)
    (root / "link_out.ipynb").symlink_to(outside)
    (root / "dir_out").symlink_to(tmp_path, target_is_directory=True)
    (root / "link_in.ipynb").symlink_to(root / "a.ipynb")
    original = outside.read_bytes()

    for bad in ["../outside.ipynb", str(outside), "link_out.ipynb", "dir_out/outside.ipynb", "sub/../../outside.ipynb"]:
        with pytest.raises(ValueError, match="outside the notebook root"):
            files.read(bad)
        with pytest.raises(ValueError, match="outside the notebook root"):
            files.edit(bad, "", [{"op": "insert", "source": "pwned"}])
        with pytest.raises(ValueError, match="outside the notebook root"):
            files.run_cells(bad, None, lambda code: pytest.fail("must not run"))
    with pytest.raises(ValueError, match="outside the notebook root"):
        files.edit("../brand_new.ipynb", "", [])
    assert outside.read_bytes() == original
    assert not (tmp_path / "brand_new.ipynb").exists()

    with pytest.raises(ValueError, match=r"\.ipynb"):
        files.read("notes.txt")
    with pytest.raises(FileNotFoundError) as err:
        files.read("nope.ipynb")
    assert "a.ipynb" in str(err.value) and "outside" not in str(err.value)
    # A symlink that stays inside the root is fine and is reported by its real path.
    assert files.read("link_in.ipynb")["path"] == "a.ipynb"


@pytest.mark.timeout(120)
def test_run_cells_in_a_real_kernel_writes_outputs_back(kernel: Any, tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    files = NotebookFiles(root)
    created = files.edit(
        "analysis.ipynb",
        "",
        [
            {"op": "insert", "source": "a = 2"},
            {"op": "insert", "source": "Some *notes*", "cell_type": "markdown"},
            {"op": "insert", "source": "print(a * 21)"},
            {"op": "insert", "source": "a + 1"},
            {"op": "insert", "source": "raise ValueError('boom')"},
            {"op": "insert", "source": "print('never')"},
        ],
    )
    c_assign, _md, c_print, c_expr, c_raise, c_never = created["inserted"]
    execute = KernelExecute(kernel.kc)

    result = files.run_cells("analysis.ipynb", None, execute, version=created["version"])
    assert [r["cell_id"] for r in result["results"]] == [c_assign, c_print, c_expr, c_raise]
    assert [r["status"] for r in result["results"]] == ["ok", "ok", "ok", "error"]
    assert "print('never')" not in execute.calls  # stopped at the first error
    assert result["version"] == sha(root / "analysis.ipynb") and result["not_written"] == []

    nb = nbformat.read(root / "analysis.ipynb", as_version=4)
    nbformat.validate(nb)
    by_id = {c.id: c for c in nb.cells}
    assert by_id[c_print].outputs[0].text == "42\n"
    assert by_id[c_expr].outputs[0].data["text/plain"] == "3"
    assert by_id[c_expr].execution_count == result["results"][2]["execution_count"] is not None
    assert by_id[c_raise].outputs[0].ename == "ValueError"
    assert by_id[c_never].outputs == [] and by_id[c_never].execution_count is None
    summary = files.read("analysis.ipynb")
    assert next(c for c in summary["cells"] if c["id"] == c_print)["outputs"][0]["text"] == "42\n"

    # Selected cells run in the order given; markdown cells and unknown ids are refused before running.
    execute.calls.clear()
    result = files.run_cells("analysis.ipynb", [c_expr, c_assign], execute)
    assert result["results"][0]["outputs"][0]["data"]["text/plain"] == "3"
    assert execute.calls == ["a + 1", "a = 2"]
    with pytest.raises(ValueError, match="not code cells"):
        files.run_cells("analysis.ipynb", [c_assign, _md], execute)
    with pytest.raises(KeyError, match="zzz"):
        files.run_cells("analysis.ipynb", ["zzz"], execute)
    with pytest.raises(StaleNotebookError):
        files.run_cells("analysis.ipynb", None, execute, version=created["version"])
    assert execute.calls == ["a + 1", "a = 2"]  # nothing ran for the refused calls


@pytest.mark.timeout(120)
def test_run_cells_merges_outputs_into_a_notebook_edited_meanwhile(kernel: Any, tmp_path: Path) -> None:
    root = tmp_path / "merge"
    root.mkdir()
    files = NotebookFiles(root)
    created = files.edit(
        "nb.ipynb",
        "",
        [
            {"op": "insert", "source": "b = 5"},
            {"op": "insert", "source": "b * 3"},
            {"op": "insert", "source": "print('third')"},
        ],
    )
    first, second, third = created["inserted"]
    inner = KernelExecute(kernel.kc)
    edited: dict[str, Any] = {}

    def execute(code: str) -> Outcome:
        out = inner(code)
        if code == "b * 3":  # while the run is in progress, someone edits the notebook
            v = files.read("nb.ipynb")["version"]
            edited.update(
                files.edit(
                    "nb.ipynb",
                    v,
                    [
                        {"op": "replace", "cell_id": first, "source": "b = 6"},
                        {"op": "insert", "source": "added meanwhile", "cell_type": "markdown", "after": None},
                    ],
                )
            )
        return out

    result = files.run_cells("nb.ipynb", None, execute)
    assert [r["status"] for r in result["results"]] == ["ok", "ok", "ok"]
    assert result["not_written"] == [first]  # its source changed under us: its outputs would lie
    nb = nbformat.read(root / "nb.ipynb", as_version=4)
    by_id = {c.id: c for c in nb.cells}
    assert nb.cells[0].source == "added meanwhile"  # the concurrent edit survives
    assert by_id[first].source == "b = 6" and by_id[first].execution_count is None
    assert by_id[second].outputs[0].data["text/plain"] == "15"
    assert by_id[third].outputs[0].text == "third\n"
    assert result["version"] == sha(root / "nb.ipynb") != edited["version"]


@pytest.mark.timeout(120)
def test_run_cells_writes_finished_cells_when_execute_raises(kernel: Any, tmp_path: Path) -> None:
    root = tmp_path / "dies"
    root.mkdir()
    files = NotebookFiles(root)
    created = files.edit("nb.ipynb", "", [{"op": "insert", "source": "print('done')"}, {"op": "insert", "source": "x"}])
    done, _ = created["inserted"]
    inner = KernelExecute(kernel.kc)

    def execute(code: str) -> Outcome:
        if code == "x":
            raise RuntimeError("kernel died")
        return inner(code)

    with pytest.raises(RuntimeError, match="kernel died"):
        files.run_cells("nb.ipynb", None, execute)
    nb = nbformat.read(root / "nb.ipynb", as_version=4)
    assert nb.cells[0].id == done and nb.cells[0].outputs[0].text == "done\n"
    assert nb.cells[1].outputs == []
