"""An R kernel explored through ``nbmcp serve --kernel-name ir`` vs R's own calls, in the same kernel and run.

    python benchmarks/bench_kernels.py [--rows 2000000] [--n 30]

1. ``read_rows`` of 50 rows at offset 1,000,000 of a 2M-row R data.frame, read by the SDK client over stdio,
   vs R's own ``df[i:j, ]`` of those rows in the kernel (timed there) plus one MCP round trip of a one-row
   page (``read_rows`` of a one-row data.frame, measured just before). Target: ratio <= 1.5.
2. ``list_variables`` with 200 R variables (the 2M-row frame among them): bounded, whatever the data's size.
   Target: <= 0.5 s.

Needs the ``ir`` kernelspec (IRkernel). Medians of ``--n`` calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import TextContent
from verdicts import Verdicts

OFFSET, LIMIT = 1_000_000, 50

SETUP = """
big <- data.frame(id = seq_len({rows}), x = seq_len({rows}) * 0.5,
                  city = rep_len(c("Oslo", "Lima", "Pune", "Kyiv", "Quito"), {rows}))
tiny <- data.frame(a = 1L)
for (k in seq_len(197)) assign(sprintf("v%03d", k), if (k %% 2) k else letters[(k %% 26) + 1])
cat(length(ls()), "variables\\n")
"""

NATIVE = """
times <- vapply(seq_len({n}), function(k) {{
  started <- Sys.time()
  page <- big[{first}:{last}, ]
  as.numeric(Sys.time() - started, units = "secs")
}}, 0)
cat(sprintf("%.6f", median(times)))
"""


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def timed(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = time.perf_counter() - started
    if result.is_error:
        raise SystemExit(f"{tool} failed: {text_of(result)}")
    return elapsed


async def main(rows: int, n: int) -> int:
    verdicts = Verdicts()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--kernel-name", "ir"],
        cwd=str(Path.cwd()),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params) as client:
        made = await client.call_tool("execute", {"code": SETUP.format(rows=rows), "timeout": 300})
        print(text_of(made).splitlines()[0])
        await timed(client, "read_rows", {"name": "big", "offset": OFFSET, "limit": LIMIT})  # installs the probe
        pages, trips = [], []
        for _ in range(n):
            trips.append(await timed(client, "read_rows", {"name": "tiny", "limit": 1}))
            pages.append(await timed(client, "read_rows", {"name": "big", "offset": OFFSET, "limit": LIMIT}))
        native_code = NATIVE.format(n=n, first=OFFSET + 1, last=OFFSET + LIMIT)
        native = float(text_of(await client.call_tool("execute", {"code": native_code})).splitlines()[0])
        page, trip = statistics.median(pages), statistics.median(trips)
        print(f"read_rows 50 rows at offset {OFFSET:,} of {rows:,}: {page * 1000:.1f} ms")
        print(f"R's own big[i:j, ]: {native * 1000:.2f} ms; one-row read_rows round trip: {trip * 1000:.1f} ms")
        verdicts.check("read_rows deep page / (R's own + round trip)", page / (native + trip), 1.5, "x")
        listing = statistics.median([await timed(client, "list_variables", {"limit": 1000}) for _ in range(n)])
        print(f"list_variables of 200 variables: {listing * 1000:.1f} ms")
        verdicts.check("list_variables, 200 R variables", listing, 0.5, "s")
    return verdicts.report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.rows, args.n))
