"""Load on ``nbmcp serve --transport http``: rounds of concurrent client sessions, each with its own kernel.

Each round opens ``--clients`` handshake-era SDK client sessions at once (each gets its own kernel), runs a cell
in each, and leaves (DELETE: the kernels shut down). Every kernel's process must be gone at the end.
Baseline, measured in the same run, alternately: the same number of kernels started at once with plain
jupyter_client (``AsyncKernelManager`` + ``wait_for_ready`` + one execute).

Targets: 0 failed starts, 0 kernels left, and a session's connect-to-first-result median within 2x the
baseline's start-to-first-result median (it adds the HTTP server, the SDK and the session notebook-less tools).

Run: ``python benchmarks/bench_serve_load.py [--clients 16] [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from verdicts import Verdicts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.serve.test_tools import pid_alive as alive

TOKEN = "bench-token-" + "x" * 24


def start_serve(tmp: str, clients: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "nbmcp.cli", "serve", "--transport", "http", "--no-record"]
    cmd += ["--max-kernels", str(clients)]
    env = {**os.environ, "NBMCP_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([proc.stderr], [], [], 1)[0]:
            continue
        line = proc.stderr.readline()
        if line.startswith("nbmcp serve: http"):
            return proc, line.split(": ", 1)[1].strip()
        if not line:
            break
    proc.kill()
    raise SystemExit("nbmcp serve did not start")


async def session(url: str) -> tuple[float, int | None, str | None]:
    started = time.perf_counter()
    try:
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool("execute", {"code": "import os\nos.getpid()"})
            took = time.perf_counter() - started
            if result.is_error:
                return took, None, result.content[0].text
            return took, int(result.content[0].text), None
    except Exception as exc:
        return time.perf_counter() - started, None, repr(exc)


async def raw_start() -> float:
    from jupyter_client.manager import AsyncKernelManager

    started = time.perf_counter()
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        await kc.execute_interactive("1+1", timeout=60, output_hook=lambda msg: None)
        return time.perf_counter() - started
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def measure(url: str, clients: int, rounds: int) -> dict[str, list]:
    out: dict[str, list] = {"ours": [], "raw": [], "failures": [], "pids": []}
    for index in range(rounds):
        results = await asyncio.gather(*(session(url) for _ in range(clients)))
        for took, pid, error in results:
            out["ours"].append(took)
            if pid is not None:
                out["pids"].append(pid)
            if error is not None:
                out["failures"].append(error)
        if index % 3 == 0:  # the baseline alternates with our rounds, so both see the same machine
            out["raw"] += await asyncio.gather(*(raw_start() for _ in range(clients)))
        print(f"  round {index + 1}/{rounds}: {len(out['failures'])} failed so far", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent sessions per round (default 16)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_serve(tmp, args.clients)
        try:
            m = asyncio.run(measure(url, args.clients, args.rounds))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(alive(p) for p in m["pids"]):
                time.sleep(0.2)
            left = [p for p in m["pids"] if alive(p)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    ours, raw = statistics.median(m["ours"]) * 1000, statistics.median(m["raw"]) * 1000
    total = args.clients * args.rounds
    print(f"nbmcp serve load ({args.clients} concurrent sessions x {args.rounds} rounds = {total}; medians)")
    print(f"  session: connect to first result    {ours:8.0f} ms  (max {max(m['ours']) * 1000:.0f} ms)")
    print(f"  baseline: raw kernel start+execute  {raw:8.0f} ms  ({len(m['raw'])} starts, same concurrency)")
    print(f"  failed starts {len(m['failures'])}, kernels left {len(left)}")
    for failure in m["failures"][:5]:
        print("   ", failure)
    verdicts = Verdicts()
    verdicts.check("failed starts", len(m["failures"]), 0)
    verdicts.check("kernels left after the sessions ended", len(left), 0)
    verdicts.check("session start / raw kernel start (ratio)", ours / raw, 2.0)
    sys.exit(verdicts.report())


if __name__ == "__main__":
    main()
