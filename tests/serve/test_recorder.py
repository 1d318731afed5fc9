"""The session notebook recorder: valid nbformat, atomic writes, write-behind, re-runs with nbclient."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import v4

from nbmcp.serve.notebook import recorder as recorder_mod
from nbmcp.serve.notebook.recorder import SessionRecorder, write_notebook_atomic


@dataclass
class Outcome:
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    status: str = "ok"


def run_in_kernel(kc: Any, code: str, timeout: float = 60) -> Outcome:
    """Execute ``code`` in a real kernel; outputs are nbformat v4 nodes built from the iopub messages."""
    out = Outcome()

    def hook(msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        if kind in ("stream", "display_data", "execute_result", "error"):
            out.outputs.append(v4.output_from_msg(msg))
        elif kind == "clear_output":
            out.outputs.clear()

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    out.execution_count = reply["content"].get("execution_count")
    out.status = reply["content"]["status"]
    return out


def comparable(outputs: list[dict[str, Any]]) -> list[tuple]:
    """Outputs reduced to what must be identical between two runs (streams merged per name, as nbclient
    does; no execution counts or tracebacks, which carry cell numbers and colours)."""
    result: list[tuple] = []
    streams: dict[str, str] = {}
    for o in outputs:
        if o["output_type"] == "stream":
            streams[o["name"]] = streams.get(o["name"], "") + o["text"]
        elif o["output_type"] == "error":
            result.append(("error", o["ename"], o["evalue"]))
        else:
            result.append((o["output_type"], tuple(sorted(o["data"].items()))))
    return sorted(("stream", k, v) for k, v in streams.items()) + result


def tmp_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def valid_notebook(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    return nb


CELLS = [
    "x = 21",
    "print('hello', x)",
    "x * 2",
    "import sys\nprint('to stderr', file=sys.stderr)\nprint('to stdout')",
    "from IPython.display import Markdown, display\ndisplay(Markdown('**bold** %d' % x))",
    "1 / 0",
    "y = x + 1\n{'y': y, 'items': [1, 2, 3]}",
    "for i in range(3):\n    print(i)",
]


@pytest.mark.timeout(180)
def test_recorded_notebook_reruns_with_nbclient_and_gives_the_same_results(kernel: Any, tmp_path: Path) -> None:
    kc = kernel.kc
    info = kc.kernel_info(reply=True, timeout=30)["content"]["language_info"]
    path = tmp_path / "session.ipynb"
    rec = SessionRecorder(path, kernel_name="python3", language_info=info)
    live: list[Outcome] = []
    ids = []
    for code in CELLS:
        outcome = run_in_kernel(kc, code)
        live.append(outcome)
        ids.append(rec.record(code, outcome.outputs, outcome.execution_count, status=outcome.status))
    rec.close()

    nb = valid_notebook(path)
    assert [c.id for c in nb.cells] == ids
    assert [c.source for c in nb.cells] == CELLS
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.language_info.name == "python"
    assert [c.execution_count for c in nb.cells] == [o.execution_count for o in live]
    error_cell = nb.cells[CELLS.index("1 / 0")]
    assert error_cell.metadata.tags == ["raises-exception"]
    assert error_cell.metadata.nbmcp == {"status": "error"}
    assert comparable(nb.cells[2].outputs) == [("execute_result", (("text/plain", "42"),))]

    # Re-run top to bottom in a fresh kernel: no error stops it, and every cell gives the same outputs.
    rerun = nbformat.read(path, as_version=4)
    NotebookClient(rerun, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell, outcome in zip(rerun.cells, live, strict=True):
        assert comparable(cell.outputs) == comparable(outcome.outputs), cell.source
    assert comparable(rerun.cells[4].outputs)[0][1][0] == ("text/markdown", "**bold** 21")


@pytest.mark.timeout(60)
def test_a_burst_of_records_coalesces_into_few_writes(tmp_path: Path) -> None:
    path = tmp_path / "burst.ipynb"
    rec = SessionRecorder(path)
    out = [v4.new_output("stream", name="stdout", text="x\n")]
    ids = [rec.record(f"v = {i}", out, i + 1) for i in range(500)]
    rec.flush()
    assert rec.writes <= 10, rec.writes  # far fewer writes than records
    assert len(set(ids)) == 500
    nb = valid_notebook(path)
    assert [c.id for c in nb.cells] == ids
    assert nb.cells[499].source == "v = 499"
    rec.close()
    assert rec.writes <= 10


@pytest.mark.timeout(60)
def test_record_does_no_io_on_the_calling_thread(tmp_path: Path) -> None:
    """An audit hook sees every open/rename/remove/chmod of this thread while record() runs."""
    watched = {"thread": None}
    seen: list[str] = []
    io_events = {"open", "os.rename", "os.remove", "os.chmod", "os.mkdir", "os.truncate", "os.listdir"}

    def hook(event: str, args: tuple) -> None:
        if watched["thread"] == threading.get_ident() and event in io_events:
            seen.append(event)

    sys.addaudithook(hook)
    rec = SessionRecorder(tmp_path / "quiet.ipynb")
    out = [v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1)]
    watched["thread"] = threading.get_ident()
    try:
        start = time.perf_counter()
        for i in range(200):
            rec.record(f"{i}", out, 1)
        per_record = (time.perf_counter() - start) / 200
        assert seen == []
        write_notebook_atomic(v4.new_notebook(), tmp_path / "probe.ipynb")  # the hook does see writes
        assert "open" in seen and "os.rename" in seen
    finally:
        watched["thread"] = None
    rec.close()
    assert per_record < 0.002, per_record  # microseconds in practice; a notebook write costs milliseconds
    assert len(valid_notebook(tmp_path / "quiet.ipynb").cells) == 200


@pytest.mark.timeout(60)
def test_failed_write_keeps_previous_file_no_temp_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "session.ipynb"
    rec = SessionRecorder(path)
    rec.record("a = 1", [], 1)
    rec.flush()
    before = path.read_bytes()

    # Make the next os.replace fail for real: the target name is now a non-empty directory.
    path.rename(tmp_path / "saved.ipynb")
    path.mkdir()
    (path / "blocker").write_text("x")
    rec.record("b = 2", [], 2)  # recording still works; only flush reports the failure
    with pytest.raises(OSError, match="could not write session notebook"):
        rec.flush()
    assert rec.last_error is not None
    assert tmp_leftovers(tmp_path) == []
    assert (path / "blocker").read_text() == "x"

    (path / "blocker").unlink()
    path.rmdir()
    (tmp_path / "saved.ipynb").rename(path)
    assert path.read_bytes() == before
    rec.record("c = 3", [], 3)
    rec.close()
    assert [c.source for c in valid_notebook(path).cells] == ["a = 1", "b = 2", "c = 3"]
    assert tmp_leftovers(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
@pytest.mark.timeout(60)
def test_read_only_directory_reported_by_flush_only(tmp_path: Path) -> None:
    path = tmp_path / "session.ipynb"
    rec = SessionRecorder(path)
    rec.record("a = 1", [], 1)
    rec.flush()
    before = path.read_bytes()
    tmp_path.chmod(0o555)
    try:
        rec.record("b = 2", [], 2)
        with pytest.raises(OSError):
            rec.flush()
        assert path.read_bytes() == before
    finally:
        tmp_path.chmod(0o755)
    rec.close()
    assert len(valid_notebook(path).cells) == 2
    assert tmp_leftovers(tmp_path) == []


def test_write_notebook_atomic_unserialisable_output_leaves_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    nb = v4.new_notebook(cells=[v4.new_code_cell("1")])
    write_notebook_atomic(nb, path)
    before = path.read_bytes()
    nb.cells[0].metadata["bad"] = object()  # passes the schema (free-form metadata), fails json.dumps
    with pytest.raises(TypeError):
        write_notebook_atomic(nb, path)
    nb.cells[0].metadata.pop("bad")
    nb.cells[0].outputs.append({"output_type": "nonsense"})
    with pytest.raises(nbformat.ValidationError):
        write_notebook_atomic(nb, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]


def test_write_notebook_atomic_failure_after_temp_written(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "nb.ipynb"
    write_notebook_atomic(v4.new_notebook(cells=[v4.new_code_cell("old")]), path)
    path.chmod(0o640)
    before = path.read_bytes()
    temps: list[str] = []
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        temps.append(Path(src).name)
        assert Path(src).exists() and Path(src).parent == tmp_path  # fully written, same directory
        raise OSError("injected failure at rename")

    monkeypatch.setattr(recorder_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        write_notebook_atomic(v4.new_notebook(cells=[v4.new_code_cell("new")]), path)
    monkeypatch.setattr(recorder_mod.os, "replace", real_replace)
    assert temps and not (tmp_path / temps[0]).exists()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]

    version = write_notebook_atomic(v4.new_notebook(cells=[v4.new_code_cell("new")]), path)
    assert nbformat.read(path, as_version=4).cells[0].source == "new"
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file keeps its permissions
    import hashlib

    assert version == hashlib.sha256(path.read_bytes()).hexdigest()


def test_close_flushes_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "late.ipynb"
    rec = SessionRecorder(path, quiet=60, max_delay=60)  # the writer would not write on its own for 60 s
    for i in range(3):
        rec.record(f"print({i})", [v4.new_output("stream", name="stdout", text=f"{i}\n")], i + 1)
    assert not path.exists() and rec.writes == 0
    rec.close()
    rec.close()
    assert rec.closed and rec.writes == 1
    nb = valid_notebook(path)
    assert [c.outputs[0].text for c in nb.cells] == ["0\n", "1\n", "2\n"]
    with pytest.raises(RuntimeError, match="closed"):
        rec.record("x", [], None)


@pytest.mark.timeout(60)
def test_unclosed_recorder_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.ipynb"
    script = textwrap.dedent(
        f"""
        from nbmcp.serve.notebook.recorder import SessionRecorder
        rec = SessionRecorder({str(path)!r}, quiet=60, max_delay=60)
        rec.record("answer = 42", [], 1)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)
    assert [c.source for c in valid_notebook(path).cells] == ["answer = 42"]


def test_invalid_outputs_are_dropped_but_code_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "bad.ipynb"
    with SessionRecorder(path) as rec:
        rec.record("a = 1", [{"output_type": "display_data", "data": {"text/plain": object()}, "metadata": {}}], 1)
        rec.record("b = 2", [{"output_type": "no-such-type"}], 2)
        rec.record("c = 3", [v4.new_output("stream", name="stdout", text="ok\n")], 3)
    nb = valid_notebook(path)
    assert [c.source for c in nb.cells] == ["a = 1", "b = 2", "c = 3"]
    assert nb.cells[0].outputs == [] and "outputs_dropped" in nb.cells[0].metadata.nbmcp
    assert nb.cells[1].outputs == [] and "outputs_dropped" in nb.cells[1].metadata.nbmcp
    assert nb.cells[2].outputs[0].text == "ok\n"


def test_existing_notebook_is_appended_to_and_non_notebook_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    old = v4.new_notebook(cells=[v4.new_markdown_cell("# kept")])
    old.nbformat_minor = 4
    del old.cells[0]["id"]
    nbformat.write(old, path)
    with SessionRecorder(path) as rec:
        rec.record("z = 0", [], 1)
    nb = valid_notebook(path)
    assert [c.source for c in nb.cells] == ["# kept", "z = 0"]

    junk = tmp_path / "junk.ipynb"
    junk.write_text("not json")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        SessionRecorder(junk)
    assert junk.read_text() == "not json"


# -- long outputs: kept to their head and tail (nbmcp.serve.kernel.bounds) ---------------------------------------------


def test_a_30_mb_value_is_recorded_as_its_head_and_tail(kernel: Any, tmp_path: Path) -> None:
    outcome = run_in_kernel(kernel.kc, "'x' * 30_000_000 + 'END'")
    path = tmp_path / "session.ipynb"
    with SessionRecorder(path, output_limit=10_000) as rec:
        rec.record("'x' * 30_000_000 + 'END'", outcome.outputs, outcome.execution_count)

    assert path.stat().st_size < 50_000 and tmp_leftovers(tmp_path) == []
    cell = valid_notebook(path).cells[0]
    text = cell.outputs[0].data["text/plain"]
    assert text.startswith("'" + "x" * 5_000) and text.endswith("xEND'")
    assert "[nbmcp: 29,990,005 characters cut here; serve keeps the first 6,000 and the last 4,000" in text
    assert cell.metadata.nbmcp == {"cut_chars": 29_990_005}


def serve_pid(notebook: Path) -> int:
    """The `nbmcp serve` process this test started (a child of the test, recording to ``notebook``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"serve" in cmdline and str(notebook).encode() in cmdline:
            return int(entry.name)
    raise AssertionError(f"no nbmcp serve process recording to {notebook}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def wait_for_cells(path: Path, count: int, timeout: float = 30) -> nbformat.NotebookNode:
    """The session notebook once ``count`` cells are on disk (serve writes behind, within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        nb = nbformat.read(path, as_version=4) if path.exists() else None
        if nb is not None and len(nb.cells) >= count:
            return nb
        assert time.monotonic() < deadline, f"{path} has {len(nb.cells) if nb else 0} of {count} cells"
        time.sleep(0.1)


@pytest.mark.anyio
@pytest.mark.timeout(180)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads serve's /proc status")
async def test_serve_keeps_a_30_mb_print_to_its_head_and_tail_in_memory_notebook_and_outputs(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.types import TextContent

    notebook = tmp_path / "session.ipynb"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--notebook", str(notebook), "--record-output-limit", "200000"],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    big = "print('x' * 30_000_000 + 'END')"
    async with Client(params) as client:
        await client.call_tool("execute", {"code": "import sys; sys.getsizeof('warm up')"})
        pid = serve_pid(notebook)
        before = rss_mb(pid)
        results = [await client.call_tool("execute", {"code": big, "timeout": 120}) for _ in range(3)]
        grown = rss_mb(pid) - before  # 340 MB when serve kept every output whole (and the notebook its 90 MB)
        assert grown < 100, f"serve's RSS grew by {grown:.0f} MB over three 30 MB prints"

        result = results[-1]
        texts = [b.text for b in result.content if isinstance(b, TextContent)]
        assert any("29,800,004 characters of this output were not kept" in t for t in texts), texts
        assert result.structured_content["truncated"] is True
        assert result.structured_content["cut_chars"] == 29_800_004
        sent = texts[0]  # the budgeted stream text: its head and tail are part of what is kept
        head, tail = sent.split("\n[... ", 1)[0], sent.rsplit("...]\n", 1)[1]
        # the full output at nbmcp://outputs/{id} is the kept text too: head, the cut note, tail
        uri = re.search(r"full output: (nbmcp://outputs/\w+)", sent)
        assert uri, sent[:1000]
        full = (await client.read_resource(uri.group(1))).contents[0].text
        assert len(full) < 201_000 and full.startswith(head) and full.endswith(tail) and full.endswith("xEND\n")
        assert "[nbmcp: 29,800,004 characters cut here; serve keeps the first 120,000 and the last 80,000" in full
        value = await client.call_tool("execute", {"code": "'y' * 30_000_000", "timeout": 120})  # a value, not a print
        assert value.structured_content["cut_chars"] == 29_800_002
        nb = wait_for_cells(notebook, 5)

    nbformat.validate(nb)
    assert tmp_leftovers(tmp_path) == []
    assert notebook.stat().st_size < 1_000_000  # 90 MB when every output was kept whole
    for cell in nb.cells[1:4]:
        assert cell.source == big and cell.metadata.nbmcp == {"cut_chars": 29_800_004}
        (stream,) = cell.outputs
        assert stream.text.startswith(head) and stream.text.endswith(tail)
        assert "[nbmcp: 29,800,004 characters cut here" in stream.text and len(stream.text) < 201_000
    (result,) = nb.cells[4].outputs
    assert nb.cells[4].metadata.nbmcp == {"cut_chars": 29_800_002}
    assert "[nbmcp: 29,800,002 characters cut here" in result.data["text/plain"]
