"""Live cells: how soon the assistant's cell is complete in the open notebook's shared document (medians).

A real JupyterLab with jupyter-collaboration; a second client of the notebook's shared document (what a
JupyterLab tab holds: the collaboration WebSocket, pycrdt) observes it from its own thread and event loop;
the SDK client runs ``__import__('time').time()`` in the notebook's kernel through ``{base_url}nbmcp/mcp``.
The value is the kernel's clock just before it replies (same machine, same clock), so each figure is measured
from (slightly before) the kernel's reply:

1. live: until the observer sees the cell with its execution count and result. Target: median <= 50 ms.
2. baseline, same run, same calls: until the assistant (the SDK client) has the tool result.

Run: ``python benchmarks/bench_live.py [--iterations N]`` (starts and stops its own JupyterLab).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verdicts import Verdicts

from nbmcp.client import connect
from tests.jupyter_helpers import JupyterProcess, jupyter_server
from tests.ydoc_client import open_notebook

LIVE_TARGET_MS = 50.0
NOTEBOOK = "bench.ipynb"
NUMBER = re.compile(r"\d+\.\d+")


class Observer:
    """The second client, on its own thread: when each assistant cell was first seen complete."""

    def __init__(self, lab: JupyterProcess) -> None:
        self.lab = lab
        self.seen: dict[str, float] = {}  # cell source -> time.time() when it had its count and result
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=anyio.run, args=(self.run,), daemon=True)

    async def run(self) -> None:
        async with open_notebook(self.lab.url, self.lab.token, NOTEBOOK) as (notebook, _room):
            cells = notebook.ycells

            def changed(_events: Any) -> None:
                now = time.time()
                cell = cells[len(cells) - 1]
                if cell.get("execution_count") is None or not len(cell["outputs"]):
                    return
                source = str(cell["source"])
                self.seen.setdefault(source, now)

            subscription = cells.observe_deep(changed)
            self.ready.set()
            await anyio.to_thread.run_sync(self.stop.wait)
            cells.unobserve(subscription)


async def measure(lab: JupyterProcess, observer: Observer, n: int) -> tuple[list[float], list[float]]:
    live, answered = [], []
    async with connect(f"{lab.url}nbmcp/mcp", lab.token) as client:
        for i in range(n + 5):  # the first calls attach to the kernel and warm up: not counted
            code = f"__import__('time').time()  # call {i}"
            result = await client.call_tool("execute", {"code": code, "notebook": NOTEBOOK})
            returned = time.time()
            assert not result.is_error, result
            kernel_time = float(next(c.text for c in result.content if NUMBER.fullmatch(getattr(c, "text", ""))))
            with anyio.fail_after(10):
                while code not in observer.seen:
                    await anyio.sleep(0.005)
            if i >= 5:
                live.append((observer.seen[code] - kernel_time) * 1000)
                answered.append((returned - kernel_time) * 1000)
    return live, answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="calls (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbmcp-bench-live-") as tmp:
        root = Path(tmp)
        kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
        notebook.metadata["kernelspec"] = kernelspec
        nbformat.write(notebook, root / NOTEBOOK)
        with jupyter_server(app="lab", root=root) as lab:
            lab.start_notebook_kernel(NOTEBOOK)
            observer = Observer(lab)
            observer.thread.start()
            try:
                if not observer.ready.wait(60):
                    raise TimeoutError("the observer did not join the notebook's room")
                live, answered = anyio.run(measure, lab, observer, args.iterations)
            finally:
                observer.stop.set()
                observer.thread.join(30)
    live_p50, answered_p50 = statistics.median(live), statistics.median(answered)
    print(f"live cells: {len(live)} executes of __import__('time').time() through nbmcp/mcp, from the kernel's clock")
    print(f"  complete in the shared document (second client)  p50 {live_p50:7.2f} ms  max {max(live):7.2f} ms")
    print(f"  baseline: result at the assistant (SDK client)   p50 {answered_p50:7.2f} ms  max {max(answered):7.2f} ms")
    print(f"  ratio live / baseline                                {live_p50 / answered_p50:7.2f}")
    verdicts = Verdicts()
    verdicts.check("live cell complete after the kernel's reply (p50)", live_p50, LIVE_TARGET_MS, "ms")
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
