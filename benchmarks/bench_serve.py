"""Benchmark ``nbmcp serve`` against its floors, measured in the same run (medians).

1. ``execute("1+1")`` over stdio  vs  raw jupyter_client execute + SDK stdio round trip (trivial tool).
   Target: ratio <= 1.3.
2. 1 MB of printed output over stdio  vs  the raw kernel producing it.  Target: ratio <= 2.
3. Cold start, process start to first execute result  vs  raw kernel start to first result + SDK stdio
   start to first result.  Target: ratio <= 1.5.
4. Interrupt after a timeout: the result (kernel idle again) arrives <= 1 s after the deadline.

Run: ``python benchmarks/bench_serve.py [--n 40]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from verdicts import Verdicts

CODE_1MB = "print('x' * 1_000_000)"

TRIVIAL_SERVER = """
from mcp.server.mcpserver import MCPServer
server = MCPServer("floor")

@server.tool()
def ping() -> str:
    return "ok"

server.run()
"""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def serve_params(tmp: str, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "nbmcp.cli", "serve", "--no-record", *args], cwd=tmp, env=dict(os.environ)
    )


def floor_params(tmp: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-c", TRIVIAL_SERVER], cwd=tmp, env=dict(os.environ))


# ------------------------------------------------------------------------------------------- runs
# The three contenders run side by side and are measured alternately, iteration by iteration, so a
# busy machine (other processes) slows all of them alike.


class RawKernel:
    """A kernel driven by plain jupyter_client (blocking client), the floor for kernel work."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> None:
        self.kc.execute_interactive(code, output_hook=lambda msg: None, timeout=60)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def raw_cold() -> float:
    started = time.perf_counter()
    kernel = RawKernel()
    kernel.run("1+1")
    took = time.perf_counter() - started
    kernel.close()
    return took


async def client_cold(params: StdioServerParameters, tool: str, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with Client(params) as client:
        await client.call_tool(tool, args)
        return time.perf_counter() - started


async def measure(tmp: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        k: [] for k in ("raw_small", "sdk_small", "ours_small", "raw_big", "ours_big", "raw_cold", "sdk_cold",
                        "ours_cold", "interrupt")
    }  # fmt: skip
    for _ in range(3):
        out["raw_cold"].append(raw_cold())
        out["sdk_cold"].append(await client_cold(floor_params(tmp), "ping", {}))
        out["ours_cold"].append(await client_cold(serve_params(tmp), "execute", {"code": "1+1"}))

    raw = RawKernel()
    try:
        async with Client(floor_params(tmp)) as floor, Client(serve_params(tmp)) as ours:
            for _ in range(5):  # warm up
                raw.run("1+1")
                await floor.call_tool("ping", {})
                await ours.call_tool("execute", {"code": "1+1"})
            for _ in range(n):
                t = time.perf_counter()
                raw.run("1+1")
                out["raw_small"].append(time.perf_counter() - t)
                t = time.perf_counter()
                await floor.call_tool("ping", {})
                out["sdk_small"].append(time.perf_counter() - t)
                t = time.perf_counter()
                result = await ours.call_tool("execute", {"code": "1+1"})
                out["ours_small"].append(time.perf_counter() - t)
                assert result.content[0].text == "2"
            for _ in range(max(5, n // 4)):
                t = time.perf_counter()
                raw.run(CODE_1MB)
                out["raw_big"].append(time.perf_counter() - t)
                t = time.perf_counter()
                result = await ours.call_tool("execute", {"code": CODE_1MB})
                out["ours_big"].append(time.perf_counter() - t)
                assert result.structured_content["truncated"] is True
                sent = sum(len(getattr(b, "text", "")) for b in result.content)
                assert sent < 25_000, sent  # cut to the budget, sent once
            for _ in range(5):
                t = time.perf_counter()
                result = await ours.call_tool("execute", {"code": "import time\ntime.sleep(100)", "timeout": 1})
                out["interrupt"].append(time.perf_counter() - t - 1.0)
                assert result.structured_content["status"] == "timeout"
                check = await ours.call_tool("execute", {"code": "1+1", "timeout": 5})
                assert check.content[0].text == "2"  # idle again, state kept
    finally:
        raw.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="iterations for the small round trips (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        m = anyio.run(measure, tmp, args.n)
    raw_small, sdk_small, raw_big, raw_cold, sdk_cold = (
        m["raw_small"],
        m["sdk_small"],
        m["raw_big"],
        m["raw_cold"],
        m["sdk_cold"],
    )
    ours = {"small": m["ours_small"], "big": m["ours_big"], "cold": m["ours_cold"], "interrupt": m["interrupt"]}

    floor = median_ms(raw_small) + median_ms(sdk_small)
    ex = median_ms(ours["small"])
    big_raw, big_ours = median_ms(raw_big), median_ms(ours["big"])
    cold_floor = median_ms(raw_cold) + median_ms(sdk_cold)
    cold = median_ms(ours["cold"])
    intr = median_ms(ours["interrupt"])
    print(f"nbmcp serve benchmark (medians; n={args.n})")
    print(
        f"  execute('1+1') over stdio        {ex:8.1f} ms   floor: raw {median_ms(raw_small):.1f} + SDK "
        f"{median_ms(sdk_small):.1f} = {floor:.1f} ms"
    )
    print(f"  1 MB printed output              {big_ours:8.1f} ms   floor: kernel alone {big_raw:.1f} ms")
    print(
        f"  cold start to first result       {cold:8.0f} ms   floor: kernel {median_ms(raw_cold):.0f} + SDK "
        f"{median_ms(sdk_cold):.0f} = {cold_floor:.0f} ms"
    )
    print(f"  interrupt after timeout          {intr:8.0f} ms   deadline to idle result")
    verdicts = Verdicts()
    verdicts.check("execute('1+1') over stdio / floor (ratio)", ex / floor, 1.3)
    verdicts.check("1 MB printed output / kernel alone (ratio)", big_ours / big_raw, 2.0)
    verdicts.check("cold start to first result / floor (ratio)", cold / cold_floor, 1.5)
    verdicts.check("interrupt after timeout, deadline to idle result", intr, 1000, "ms")
    sys.exit(verdicts.report())


if __name__ == "__main__":
    main()
