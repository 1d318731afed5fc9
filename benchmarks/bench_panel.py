"""What the panel and the audit log add to a tool call.

A real kernel with ``%load_ext nbmcp`` and a trivial tool; the official SDK client calls it over streamable
HTTP. Four conditions, measured in the same run and interleaved round by round (so drift on a shared machine
hits all of them alike): panel shown or not x audit log on or off. Target: each adds <= 1 ms to the median.

    python benchmarks/bench_panel.py [--rounds 6] [--calls 150]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import tempfile
import time
from typing import Any

from jupyter_client import KernelManager
from verdicts import Verdicts

from nbmcp.client import connect

CONDITIONS = [(panel, audit) for panel in (False, True) for audit in (False, True)]
TARGET_MS = 1.0


class Kernel:
    def __init__(self, env: dict[str, str]) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"], env={**os.environ, **env})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> str:
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise RuntimeError(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        self.kc.execute_interactive(code, output_hook=hook, timeout=60)
        return "".join(out)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


SETUP = """
%load_ext nbmcp
import nbmcp, nbmcp.inkernel.oversight.panel, json
from IPython.display import display

@nbmcp.tool
def noop() -> str:
    return "ok"

_server = nbmcp.inkernel.lifecycle.current_server()
_audit = _server.audit
_panel = None

def _condition(panel, audit):
    global _panel
    listeners = _server.mcp_server.call_listeners
    if audit and _audit not in listeners:
        listeners.append(_audit)
    if not audit and _audit in listeners:
        listeners.remove(_audit)
    if panel and _panel is None:
        _panel = nbmcp.panel()
        display(_panel)
    if not panel and _panel is not None:
        _panel.close()
        _panel = None
    assert (nbmcp.inkernel.oversight.panel.current_panel() is not None) == panel
    assert (_server.mcp_server.approver is not None) == panel
"""


async def measure(client: Any, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await client.call_tool("noop", {})
        samples.append((time.perf_counter() - started) * 1000)
        assert not result.is_error
    return samples


async def main(rounds: int, calls: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as runtime:
        kernel = Kernel({"JUPYTER_RUNTIME_DIR": runtime})
        try:
            kernel.run(SETUP)
            info = json.loads(kernel.run("print(json.dumps({'url': nbmcp.info().url, 'token': nbmcp.info().token}))"))
            samples: dict[tuple[bool, bool], list[float]] = {c: [] for c in CONDITIONS}
            async with connect(info["url"], info["token"]) as client:
                await measure(client, warmup)
                order = list(CONDITIONS)
                for _ in range(rounds):
                    random.shuffle(order)
                    for panel, audit in order:
                        await asyncio.to_thread(kernel.run, f"_condition({panel}, {audit})")
                        await measure(client, warmup // 4)
                        samples[(panel, audit)] += await measure(client, calls)
            lines = int(kernel.run("print(_audit.flush() and _audit.lines_written)").strip() or 0)
        finally:
            kernel.shutdown()
    return {"samples": samples, "audit_lines": lines}


def report(result: dict[str, Any]) -> int:
    samples = result["samples"]
    median = {c: statistics.median(s) for c, s in samples.items()}
    base = median[(False, False)]
    print(f"tool call round trip, streamable HTTP, {len(samples[(False, False)])} calls per condition (median / p90)")
    for panel, audit in CONDITIONS:
        s = sorted(samples[(panel, audit)])
        p90 = s[int(len(s) * 0.9)]
        label = f"panel {'shown' if panel else 'not shown':9}  audit {'on ' if audit else 'off'}"
        added = median[(panel, audit)] - base
        print(
            f"  {label}: {median[(panel, audit)]:6.2f} ms / {p90:6.2f} ms"
            f"   added {added:+.2f} ms   ratio {median[(panel, audit)] / base:.3f}"
        )
    print(f"audit lines written: {result['audit_lines']}")
    verdicts = Verdicts()
    for panel, audit in CONDITIONS[1:]:
        label = " + ".join(name for name, on in (("panel shown", panel), ("audit log on", audit)) if on)
        verdicts.check(f"added median, {label}", median[(panel, audit)] - base, TARGET_MS, "ms")
    return verdicts.report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=40)
    args = parser.parse_args()
    assert list(itertools.product((False, True), repeat=2)) == CONDITIONS
    raise SystemExit(report(asyncio.run(main(args.rounds, args.calls, args.warmup))))
