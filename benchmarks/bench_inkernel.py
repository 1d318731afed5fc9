"""In-kernel server benchmarks: medians and ratios against baselines measured in the same run.

    python benchmarks/bench_inkernel.py [--iterations 200]

1. tool round trip (trivial tool, streamable HTTP): nbmcp vs a bare MCPServer with the same tool, both
   served by uvicorn threads inside the same kernel process;
2. the same round trip while a cell runs `time.sleep(30)`, vs idle;
3. the post-cell hook with 50 exposed, unsubscribed frames;
4. `read_rows` of a 50-row page: 10M-row frame vs 10k-row frame;
5. `%load_ext nbmcp` time to a listening server, beyond the one-time import of mcp and uvicorn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
from verdicts import Verdicts

from tests.conftest import KernelHandle, connect, start_kernel

BARE_SERVER = """
import logging, mcp.server.mcpserver as _m
from mcp.server.transport_security import TransportSecuritySettings as _T
from nbmcp.transport import serve_in_thread as _serve
_root = logging.getLogger(); _handlers = list(_root.handlers)
_bare = _m.MCPServer("bare")
for _h in list(_root.handlers):
    if _h not in _handlers: _root.removeHandler(_h)
@_bare.tool()
def ping() -> str:
    return "pong"
_bare_http = _serve(_bare.streamable_http_app(transport_security=_T(enable_dns_rebinding_protection=False)))
print(json.dumps({"url": f"http://127.0.0.1:{_bare_http.port}/mcp"}))
"""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def round_trips(url: str, token: str | None, tool: str, args: dict[str, Any], n: int) -> list[float]:
    async with connect(url, token, mode="legacy") as client:
        for _ in range(10):
            await client.call_tool(tool, args)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            result = await client.call_tool(tool, args)
            samples.append(time.perf_counter() - started)
            assert not result.is_error, result
        return samples


def kernel_json(kernel: KernelHandle, code: str) -> Any:
    out = kernel.run(code).raise_for_error().stdout.strip().splitlines()
    return json.loads(out[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    n = parser.parse_args().iterations
    results: dict[str, Any] = {}

    # 5. load time, in a fresh kernel, first (imports must be cold).
    kernel = start_kernel()
    try:
        timing = kernel_json(
            kernel,
            "import time, json\nt0 = time.perf_counter()\nimport nbmcp\nt1 = time.perf_counter()\n"
            "import mcp.server.mcpserver, uvicorn, starlette\nt2 = time.perf_counter()\n"
            "get_ipython().run_line_magic('load_ext', 'nbmcp')\nt3 = time.perf_counter()\n"
            "print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))",
        )
        results["import nbmcp (ms)"] = timing[0] * 1000
        results["one-time import of mcp+uvicorn (ms)"] = timing[1] * 1000
        results["%load_ext nbmcp beyond imports (ms)"] = timing[2] * 1000

        info = kernel_json(kernel, "print(json.dumps({'url': nbmcp.info().url, 'token': nbmcp.info().token}))")
        bare = kernel_json(kernel, BARE_SERVER)
        kernel.run("@nbmcp.tool\ndef ping() -> str:\n    return 'pong'").raise_for_error()

        # 1. idle round trips, interleaved in rounds so machine noise hits both alike.
        ours: list[float] = []
        base: list[float] = []
        for _ in range(4):
            base += anyio.run(round_trips, bare["url"], None, "ping", {}, n // 4)
            ours += anyio.run(round_trips, info["url"], info["token"], "ping", {}, n // 4)
        results["tool round trip, bare MCPServer (ms)"] = median_ms(base)
        results["tool round trip, nbmcp (ms)"] = median_ms(ours)
        results["ratio nbmcp / bare"] = median_ms(ours) / median_ms(base)

        # 2. while a cell is busy.
        msg_id = kernel.start_cell("import time\ntime.sleep(30)")
        busy = anyio.run(round_trips, info["url"], info["token"], "ping", {}, n)
        kernel.km.interrupt_kernel()
        kernel.wait_idle(msg_id, timeout=30)
        results["tool round trip while a cell runs (ms)"] = median_ms(busy)
        results["ratio busy / idle"] = median_ms(busy) / median_ms(ours)

        # 3. post-cell hook with 50 exposed, unsubscribed frames.
        hook = kernel_json(
            kernel,
            "import pandas as pd, timeit\n"
            "for i in range(50): nbmcp.expose(pd.DataFrame({'a': range(100_000)}), f'frame{i}')\n"
            "from nbmcp.inkernel.shell import post_run_cell\n"
            "t = timeit.repeat(post_run_cell, number=1, repeat=501)\n"
            "import statistics; print(json.dumps(statistics.median(t)))",
        )
        results["post-cell hook, 50 exposed unsubscribed (µs)"] = hook * 1e6

        # 4. read_rows: 10M rows vs 10k rows.
        kernel.run(
            "import numpy as np\n"
            "big = pd.DataFrame({'a': np.arange(10_000_000), 'b': np.random.default_rng(0).random(10_000_000)})\n"
            "small = big.iloc[:10_000].copy()\n"
            "nbmcp.expose(big, 'big'); nbmcp.expose(small, 'small')"
        ).raise_for_error()
        small: list[float] = []
        large: list[float] = []
        for _ in range(4):
            args = {"offset": 5_000, "limit": 50}
            small += anyio.run(round_trips, info["url"], info["token"], "read_rows", {"name": "small", **args}, n // 8)
            large += anyio.run(round_trips, info["url"], info["token"], "read_rows", {"name": "big", **args}, n // 8)
        results["read_rows 50 rows of 10k-row frame (ms)"] = median_ms(small)
        results["read_rows 50 rows of 10M-row frame (ms)"] = median_ms(large)
        results["ratio 10M / 10k"] = median_ms(large) / median_ms(small)
    finally:
        kernel.shutdown()

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:9.3f}")
    verdicts = Verdicts()
    verdicts.check("tool round trip, nbmcp / bare MCPServer (ratio)", results["ratio nbmcp / bare"], 1.3)
    verdicts.check("tool round trip, cell running / idle (ratio)", results["ratio busy / idle"], 1.5)
    verdicts.check(
        "post-cell hook, 50 exposed unsubscribed", results["post-cell hook, 50 exposed unsubscribed (µs)"], 2000, "µs"
    )
    verdicts.check("read_rows 50 rows, 10M-row / 10k-row frame (ratio)", results["ratio 10M / 10k"], 1.5)
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
