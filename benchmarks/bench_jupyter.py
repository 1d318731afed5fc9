"""The Jupyter Server extension's cost, measured against its floors in the same run (medians).

1. ``execute("1+1")`` through ``{base_url}nbmcp/mcp`` in a notebook's kernel, vs the floor: a raw
   jupyter_client execute of ``1+1`` on the same kernel + the SDK's streamable-HTTP round trip of a trivial
   tool on a bare ``MCPServer``. Target: ratio <= 1.3.
2. An in-kernel tool call (``%load_ext nbmcp``) through ``{base_url}nbmcp/kernels/{id}/mcp`` vs directly on
   the kernel's loopback port. Target: the proxy adds <= 2 ms (median).

Run: ``python benchmarks/bench_jupyter.py [--iterations N]`` (starts and stops its own Jupyter Server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verdicts import Verdicts

from nbmcp.client import connect
from tests.jupyter_helpers import jupyter_server, wait_for

MODE = "legacy"  # one protocol era for every figure, so the floors compare like with like
EXECUTE_RATIO_TARGET = 1.3
PROXY_OVERHEAD_TARGET_MS = 2.0


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def raw_execute_ms(connection_file: str, n: int) -> list[float]:
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=connection_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        out = []
        for _ in range(n + 3):
            started = time.perf_counter()
            reply = kc.execute_interactive("1+1", output_hook=lambda msg: None, timeout=30)
            out.append((time.perf_counter() - started) * 1000)
            assert reply["content"]["status"] == "ok"
        return out[3:]
    finally:
        kc.stop_channels()


async def http_floor_ms(n: int) -> list[float]:
    """A trivial tool on a bare MCPServer, streamable HTTP on loopback, in this process (uvicorn thread)."""
    from mcp.server.mcpserver import MCPServer

    from nbmcp.sdk import quiet_mcp_server
    from nbmcp.transport import serve_in_thread

    bare = quiet_mcp_server(lambda: MCPServer("floor"))  # MCPServer() configures root logging; undo it

    @bare.tool()
    def ping() -> str:
        return "pong"

    running = serve_in_thread(bare.streamable_http_app(host="127.0.0.1"))
    try:
        async with connect(f"http://127.0.0.1:{running.port}/mcp", None, mode=MODE) as client:
            await timed(lambda: client.call_tool("ping", {}), 5)
            return await timed(lambda: client.call_tool("ping", {}), n)
    finally:
        running.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


async def bench(url: str, token: str, kernel_id: str, connection_file: str, runtime: Path, n: int) -> dict[str, Any]:
    results: dict[str, Any] = {"iterations": n}
    async with connect(url + "nbmcp/mcp", token, mode=MODE) as client:

        async def execute() -> None:
            result = await client.call_tool("execute", {"code": "1+1", "notebook": "bench.ipynb"})
            assert not result.is_error and result.structured_content["status"] == "ok"

        await timed(execute, 5)
        ext = await timed(execute, n)
        setup = "%load_ext nbmcp\nimport nbmcp\n@nbmcp.tool\ndef ping() -> str:\n    return 'pong'"
        loaded = await client.call_tool("execute", {"code": setup, "notebook": "bench.ipynb"})
        assert not loaded.is_error, loaded.content
    raw = await anyio.to_thread.run_sync(raw_execute_ms, connection_file, n)
    floor = await http_floor_ms(n)

    found = wait_for(lambda: list(runtime.glob(f"nbmcp-{kernel_id}.json")), what="in-kernel server")
    info = json.loads(found[0].read_text())
    direct_ms: list[float] = []
    proxy_ms: list[float] = []
    async with (
        connect(info["url"], info["token"], mode=MODE) as direct,
        connect(f"{url}nbmcp/kernels/{kernel_id}/mcp", token, mode=MODE) as proxied,
    ):
        await timed(lambda: direct.call_tool("ping", {}), 5)
        await timed(lambda: proxied.call_tool("ping", {}), 5)
        for _ in range(n):  # alternate call by call, so the shared machine's drift hits both alike
            direct_ms += await timed(lambda: direct.call_tool("ping", {}), 1)
            proxy_ms += await timed(lambda: proxied.call_tool("ping", {}), 1)

    results["execute_via_extension_ms"] = median(ext)
    results["raw_jupyter_client_execute_ms"] = median(raw)
    results["sdk_http_floor_ms"] = median(floor)
    results["execute_ratio"] = median(ext) / (median(raw) + median(floor))
    results["in_kernel_tool_direct_ms"] = median(direct_ms)
    results["in_kernel_tool_via_proxy_ms"] = median(proxy_ms)
    results["proxy_overhead_ms"] = median(proxy_ms) - median(direct_ms)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="calls per figure (default 100)")
    args = parser.parse_args()
    n = max(10, min(args.iterations, 2000))
    with jupyter_server(base_url="/user/bench/") as js:
        kernel_id = js.start_notebook_kernel("bench.ipynb")
        connection_file = str(js.runtime / f"kernel-{kernel_id}.json")
        results = anyio.run(bench, js.url, js.token, kernel_id, connection_file, js.runtime, n)
    print(f"Jupyter Server extension, {n} calls per figure, medians ({MODE} protocol era)")
    print(f"  execute('1+1') via {{base_url}}nbmcp/mcp   {results['execute_via_extension_ms']:8.2f} ms")
    print(f"  raw jupyter_client execute('1+1')        {results['raw_jupyter_client_execute_ms']:8.2f} ms")
    print(f"  SDK streamable-HTTP trivial tool floor   {results['sdk_http_floor_ms']:8.2f} ms")
    floor = results["raw_jupyter_client_execute_ms"] + results["sdk_http_floor_ms"]
    print(f"  floor: raw + SDK                         {floor:8.2f} ms")
    print(f"  in-kernel tool, direct                   {results['in_kernel_tool_direct_ms']:8.2f} ms")
    print(f"  in-kernel tool, via the proxy            {results['in_kernel_tool_via_proxy_ms']:8.2f} ms")
    print(json.dumps(results))
    verdicts = Verdicts()
    verdicts.check("execute via nbmcp/mcp / floor (ratio)", results["execute_ratio"], EXECUTE_RATIO_TARGET)
    verdicts.check(
        "kernel proxy overhead (via proxy - direct)", results["proxy_overhead_ms"], PROXY_OVERHEAD_TARGET_MS, "ms"
    )
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
