"""In-kernel server under load: many concurrent SDK clients calling a trivial tool while a cell runs.

    python benchmarks/bench_load.py [--clients 32] [--calls 200] [--mode auto|legacy]

Two kernels, started alike: one serves nbmcp (``%load_ext nbmcp``, a ``@nbmcp.tool`` ``ping``), the other, the
baseline, a bare ``MCPServer`` with the same tool on a uvicorn thread (apart, so the baseline's threads and memory
do not count as nbmcp's). While a cell runs ``time.sleep`` in each (interrupted after the load), ``--clients``
clients each make ``--calls`` calls to each server, in alternating rounds so machine noise hits both alike. Prints
p50/p99 latency, calls/s, errors, and the nbmcp kernel's RSS and thread count before and after the load.

Targets: 0 errors; nbmcp's throughput at least 1/1.5 of the bare server's; nbmcp's p99 at most 3 x its p50;
threads back to where they started.

The tail is CPython's: a full garbage collection pauses every thread of a kernel for 40-80 ms, so the script
counts them in both kernels during the load. ``--gc-freeze`` runs nbmcp with ``c.NbMCP.gc_freeze = True`` (and
``gc.freeze()`` in the baseline's kernel, to compare alike). The load generator freezes its own start-up heap
either way, so its own full collections do not land in both servers' latencies.

In the 2026 era there is no session, so nbmcp tells clients apart by the name they send (its per-client limit,
``c.NbMCP.max_calls_per_client``): each load client sends its own name, as separate assistants would.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import psutil
from bench_inkernel import BARE_SERVER, kernel_json
from mcp.types import Implementation
from verdicts import Verdicts

from tests.conftest import connect, start_kernel

SETTLE_SECONDS = 20.0  # threads must be back to their start count within this

# Measurement only: the full collections a kernel runs from now on, as (count, longest pause in ms).
GC_WATCH = """
import gc as _gc, time as _time
_bench_gc = {"start": 0.0, "pauses": []}
def _bench_gc_watch(phase, info):
    if info["generation"] == 2:
        if phase == "start":
            _bench_gc["start"] = _time.perf_counter()
        else:
            _bench_gc["pauses"].append((_time.perf_counter() - _bench_gc["start"]) * 1000)
_gc.callbacks.append(_bench_gc_watch)
"""
GC_REPORT = "print(json.dumps([len(_bench_gc['pauses']), max(_bench_gc['pauses'], default=0.0)]))"


async def load(url: str, token: str | None, clients: int, calls: int, mode: str, label: str) -> dict[str, Any]:
    """``clients`` concurrent clients x ``calls`` calls of ``ping``: latencies, errors and wall time."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client(i: int) -> None:
        info = Implementation(name=f"load-{label}-{i}", version="1")
        try:
            async with connect(url, token, mode=mode, client_info=info) as client:
                for _ in range(calls):
                    started = time.perf_counter()
                    try:
                        result = await client.call_tool("ping", {})
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        continue
                    latencies.append(time.perf_counter() - started)
                    if result.is_error:
                        errors.append(str(result.content[0].text if result.content else result)[:200])
        except Exception as exc:
            errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(one_client, i)
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - started}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def kernel_resources(process: psutil.Process) -> tuple[float, int]:
    return process.memory_info().rss / 1e6, process.num_threads()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--calls", type=int, default=200, help="calls per client to each server")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds the calls are split into")
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"], help="protocol era of the clients")
    parser.add_argument("--gc-freeze", action="store_true", help="c.NbMCP.gc_freeze = True (and the baseline alike)")
    args = parser.parse_args()
    per_round = args.calls // args.rounds

    kernel = start_kernel()
    bare_kernel = start_kernel()
    try:
        if args.gc_freeze:
            kernel.run("get_ipython().config.NbMCP.gc_freeze = True").raise_for_error()
        kernel.run("%load_ext nbmcp").raise_for_error()
        info = kernel_json(
            kernel,
            "import nbmcp, json, os\n"
            "@nbmcp.tool\ndef ping() -> str:\n    return 'pong'\n"
            "print(json.dumps({'url': nbmcp.info().url, 'token': nbmcp.info().token, 'pid': os.getpid()}))",
        )
        bare_kernel.run("import json").raise_for_error()
        bare = kernel_json(bare_kernel, BARE_SERVER)
        if args.gc_freeze:
            bare_kernel.run("import gc\ngc.freeze()").raise_for_error()
        process = psutil.Process(info["pid"])
        anyio.run(load, info["url"], info["token"], 2, 5, args.mode, "warm")  # first-call imports
        anyio.run(load, bare["url"], None, 2, 5, args.mode, "warm")
        rss_before, threads_before = kernel_resources(process)
        for k in (kernel, bare_kernel):
            k.run(GC_WATCH).raise_for_error()
        gc.freeze()

        # The human's long cells, interrupted below.
        cells = [(k, k.start_cell("import time\ntime.sleep(3600)")) for k in (kernel, bare_kernel)]
        ours: dict[str, Any] = {"latencies": [], "errors": [], "wall": 0.0}
        base: dict[str, Any] = {"latencies": [], "errors": [], "wall": 0.0}
        for _ in range(args.rounds):
            for target, server, token, label in ((base, bare, None, "bare"), (ours, info, info["token"], "nbmcp")):
                got = anyio.run(load, server["url"], token, args.clients, per_round, args.mode, label)
                target["latencies"] += got["latencies"]
                target["errors"] += got["errors"]
                target["wall"] += got["wall"]
        rss_after, threads_right_after = kernel_resources(process)
        gc_pauses = {}
        for k, msg_id in cells:
            k.km.interrupt_kernel()
            k.wait_idle(msg_id, timeout=30)
        for name, k in (("bare MCPServer", bare_kernel), ("nbmcp", kernel)):
            gc_pauses[name] = kernel_json(k, GC_REPORT)

        settled_in = None
        started = time.monotonic()
        while time.monotonic() - started < SETTLE_SECONDS:
            if process.num_threads() <= threads_before:
                settled_in = time.monotonic() - started
                break
            time.sleep(0.1)
        threads_after = process.num_threads()
        names = kernel_json(
            kernel, "import threading\nprint(json.dumps(sorted(t.name for t in threading.enumerate())))"
        )
    finally:
        kernel.shutdown()
        bare_kernel.shutdown()

    results: dict[str, Any] = {}
    for name, got in (("bare MCPServer", base), ("nbmcp", ours)):
        lat = got["latencies"]
        results[f"{name}: calls"] = len(lat) + len(got["errors"])
        results[f"{name}: errors"] = len(got["errors"])
        results[f"{name}: p50 (ms)"] = statistics.median(lat) * 1000 if lat else float("nan")
        results[f"{name}: p99 (ms)"] = percentile(lat, 0.99) if lat else float("nan")
        results[f"{name}: calls/s"] = len(lat) / got["wall"] if got["wall"] else 0.0
        count, longest = gc_pauses[name]
        results[f"{name}: kernel's full GCs, longest (ms)"] = f"{count}, {longest:.0f}"
    results["throughput ratio nbmcp / bare"] = results["nbmcp: calls/s"] / results["bare MCPServer: calls/s"]
    results["nbmcp p99 / p50"] = results["nbmcp: p99 (ms)"] / results["nbmcp: p50 (ms)"]
    # Not a target: how much of the tail is the machine's (the same ratio for the bare server in the same run).
    results["bare MCPServer p99 / p50"] = results["bare MCPServer: p99 (ms)"] / results["bare MCPServer: p50 (ms)"]
    results["kernel RSS before / after load (MB)"] = f"{rss_before:.1f} / {rss_after:.1f}"
    threads = f"{threads_before} / {threads_right_after} / {threads_after}"
    results["kernel threads before / right after / settled"] = threads
    results["threads settled within (s)"] = "not within 20" if settled_in is None else f"{settled_in:.1f}"
    results["nbmcp kernel's Python threads after"] = ", ".join(names)

    frozen = ", kernels' heaps frozen (--gc-freeze)" if args.gc_freeze else ""
    print(f"{args.clients} clients x {args.calls} calls to each server, era {args.mode!r}, while a cell sleeps{frozen}")
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:9.3f}" if isinstance(value, float) else f"{key:<{width}}  {value:>9}")
    for name, got in (("bare", base), ("nbmcp", ours)):
        for error in sorted(set(got["errors"]))[:5]:
            print(f"  {name} error: {error}")

    verdicts = Verdicts()
    verdicts.check("nbmcp errors under load", results["nbmcp: errors"], 0, "calls")
    verdicts.check(
        "throughput, nbmcp / bare MCPServer (ratio)", results["throughput ratio nbmcp / bare"], 1 / 1.5, at_least=True
    )
    verdicts.check("nbmcp p99 / p50 (ratio)", results["nbmcp p99 / p50"], 3.0)
    verdicts.check("kernel threads after the load, beyond the start", threads_after - threads_before, 0, "threads")
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
