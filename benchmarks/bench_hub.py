"""nbmcp through a real JupyterHub route, measured against the same user server reached directly (medians).

``execute("1+1")`` in a notebook's kernel through ``{hub}/user/<name>/nbmcp/mcp`` (configurable-http-proxy in
front of the single-user server) vs through the single-user server's own loopback port, same token, calls
alternating so the shared machine's drift hits both alike. Target: p50 ratio <= 1.3.

Run: ``python benchmarks/bench_hub.py [--iterations N]`` (starts and stops its own JupyterHub; needs
configurable-http-proxy from npm, see ``.ci/run``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verdicts import Verdicts

from nbmcp.client import connect
from tests.hub_helpers import chp_command, jupyterhub

MODE = "legacy"  # one protocol era for both routes
RATIO_TARGET = 1.3
USER = "bench"


async def bench(hub_route: str, direct_route: str, token: str, n: int) -> dict[str, Any]:
    args = {"code": "1+1", "notebook": "bench.ipynb"}
    hub_ms: list[float] = []
    direct_ms: list[float] = []
    async with connect(hub_route, token, mode=MODE) as via_hub, connect(direct_route, token, mode=MODE) as direct:

        async def timed(client: Any, into: list[float] | None) -> None:
            started = time.perf_counter()
            result = await client.call_tool("execute", args)
            elapsed = (time.perf_counter() - started) * 1000
            assert not result.is_error and result.structured_content["status"] == "ok", result.content
            if into is not None:
                into.append(elapsed)

        for _ in range(5):  # warm-up: connections, the Hub's token cache, the kernel
            await timed(via_hub, None)
            await timed(direct, None)
        for _ in range(n):
            await timed(via_hub, hub_ms)
            await timed(direct, direct_ms)
    return {
        "iterations": n,
        "execute_via_hub_ms": statistics.median(hub_ms),
        "execute_direct_ms": statistics.median(direct_ms),
        "ratio": statistics.median(hub_ms) / statistics.median(direct_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="calls per route (default 100)")
    args = parser.parse_args()
    n = max(10, min(args.iterations, 2000))
    if chp_command() is None:
        print(
            "configurable-http-proxy is not installed: npm install --prefix ~/.cache/nbmcp-npm configurable-http-proxy"
        )
        return 2
    with jupyterhub((USER,)) as hub:
        hub.start_server(USER)
        token = hub.create_token(USER)
        body = {"path": "bench.ipynb", "type": "notebook", "name": "bench.ipynb", "kernel": {"name": "python3"}}
        headers = {"Authorization": f"token {token}"}
        httpx.post(hub.user_url(USER) + "api/sessions", json=body, headers=headers, timeout=60).raise_for_status()
        hub_route = hub.user_url(USER) + "nbmcp/mcp"
        direct_route = hub.direct_url(USER) + "nbmcp/mcp"
        results = anyio.run(bench, hub_route, direct_route, token, n)
    print(f"JupyterHub route vs the single-user server directly, {n} calls each, medians ({MODE} protocol era)")
    print(f"  execute('1+1') via {hub_route}   {results['execute_via_hub_ms']:8.2f} ms")
    print(f"  execute('1+1') via {direct_route}   {results['execute_direct_ms']:8.2f} ms")
    print(json.dumps(results))
    verdicts = Verdicts()
    verdicts.check("execute via the Hub / direct (p50 ratio)", results["ratio"], RATIO_TARGET)
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
