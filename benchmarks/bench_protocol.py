"""Protocol benchmarks (completion, logging) of the in-kernel server: medians and ratios against baselines
measured in the same run, with the same client.

    python benchmarks/bench_protocol.py [--iterations 200]

1. ``completion/complete`` of object names (``nbmcp://objects/{name}``, a prefix matching 111 of them) with
   1,000 exposed objects, vs a trivial tool call;
2. a tool that logs 10,000 debug records (its logger at DEBUG, so every record is made and reaches nbmcp's
   forwarder: the worst case) while the client's level is ``warning``, vs the same call from a client that
   asked for no log messages, and vs Python's own record factory put back (the records made, nobody to
   hand them to: nbmcp's own share). For reference, not targets: the same tool without the logging calls,
   and with its logger at Python's default level (the records are never made; what remains is the cost of
   ``Logger.debug`` itself, which nbmcp's code never sees).
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
from mcp.types import ResourceTemplateReference
from verdicts import Verdicts

from tests.conftest import connect, start_kernel

SETUP = """
%load_ext nbmcp
import json, logging, nbmcp
for i in range(1000):
    nbmcp.expose({"value": i}, f"obj_{i}")


@nbmcp.tool
def ping() -> str:
    return "pong"


quiet_log = logging.getLogger("bench.quiet")   # Python's default: effective level WARNING (the root's)
loud_log = logging.getLogger("bench.loud")
loud_log.setLevel(logging.DEBUG)               # every debug record is made


def _work(n, log):
    total = 0
    for i in range(n):
        total += (i * i) % 7
        if log is not None:
            log.debug("row %d total %d", i, total)
    return total


@nbmcp.tool
def work(n: int = 10_000) -> int:
    return _work(n, None)


@nbmcp.tool
def work_quiet_logging(n: int = 10_000) -> int:
    return _work(n, quiet_log)


@nbmcp.tool
def work_loud_logging(n: int = 10_000) -> int:
    return _work(n, loud_log)


from nbmcp.inkernel import logs as _logs


@nbmcp.tool
def toggle_forwarder(on: bool) -> None:  # for the forwarder on/off comparison
    # off: Python's own record factory, as without nbmcp
    logging.setLogRecordFactory(_logs._forwarder.factory if on else _logs._forwarder.previous_factory)


print(json.dumps({"url": nbmcp.info().url, "token": nbmcp.info().token}))
"""

OBJECTS = ResourceTemplateReference(uri="nbmcp://objects/{name}")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def measure(info: dict[str, str], n: int) -> dict[str, list[float]]:
    """Each case called in turn, so machine noise hits all alike. 2026-era clients: one that asks for log messages
    at ``warning`` (a per-request level), one that asks for none."""
    cases = [
        ("ping", "silent", "ping"),
        ("complete", "silent", "complete"),
        ("work", "silent", "work"),
        ("work, quiet logger", "silent", "work_quiet_logging"),
        ("work, DEBUG logger, client logs off", "silent", "work_loud_logging"),
        ("work, DEBUG logger, client at warning", "warning", "work_loud_logging"),
        ("work, DEBUG logger, client at warning, forwarder off", "warning", "detached"),
    ]
    samples: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    async with (
        connect(info["url"], info["token"], mode="2026-07-28") as silent,
        connect(info["url"], info["token"], mode="2026-07-28", log_level="warning") as at_warning,
    ):
        clients = {"silent": silent, "warning": at_warning}

        async def run(client: Any, what: str) -> None:
            if what == "complete":
                result = await client.complete(OBJECTS, {"name": "name", "value": "obj_1"})
                assert len(result.completion.values) == 100 and result.completion.total == 111, result
            else:
                result = await client.call_tool(what, {})
                assert not result.is_error, result

        async def once(label: str, who: str, what: str) -> None:
            if what == "detached":
                await clients[who].call_tool("toggle_forwarder", {"on": False})
            try:
                started = time.perf_counter()
                await run(clients[who], "work_loud_logging" if what == "detached" else what)
                samples[label].append(time.perf_counter() - started)
            finally:
                if what == "detached":
                    await clients[who].call_tool("toggle_forwarder", {"on": True})

        for _label, who, what in cases:  # warm up
            for _ in range(3):
                await once(_label, who, what)
            samples[_label].clear()
        # One call of each case in turn, so noise from other processes hits every case alike; within groups of
        # comparable calls (a slow 10k-record call right before a trivial one would slow the trivial one down).
        for group in (cases[:2], cases[2:]):
            for _ in range(n):
                for label, who, what in group:
                    await once(label, who, what)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    n = parser.parse_args().iterations
    results: dict[str, float] = {}
    kernel = start_kernel()
    try:
        out = kernel.run(SETUP).raise_for_error().stdout.strip().splitlines()
        info = json.loads(out[-1])
        samples = anyio.run(measure, info, n)
    finally:
        kernel.shutdown()

    results["trivial tool call (ms)"] = median_ms(samples["ping"])
    results["complete object names, 1,000 exposed (ms)"] = median_ms(samples["complete"])
    results["ratio complete / trivial call"] = (
        results["complete object names, 1,000 exposed (ms)"] / results["trivial tool call (ms)"]
    )
    results["tool, no logging calls (ms)"] = median_ms(samples["work"])
    results["tool + 10k debug calls, logger at Python's default (ms)"] = median_ms(samples["work, quiet logger"])
    results["tool + 10k debug records (DEBUG logger), client logs off (ms)"] = median_ms(
        samples["work, DEBUG logger, client logs off"]
    )
    results["tool + 10k debug records, client at warning (ms)"] = median_ms(
        samples["work, DEBUG logger, client at warning"]
    )
    results["tool + 10k debug records, client at warning, forwarder off (ms)"] = median_ms(
        samples["work, DEBUG logger, client at warning, forwarder off"]
    )
    results["ratio client at warning / client logs off"] = (
        results["tool + 10k debug records, client at warning (ms)"]
        / results["tool + 10k debug records (DEBUG logger), client logs off (ms)"]
    )
    results["ratio forwarder on / off (nbmcp's share)"] = (
        results["tool + 10k debug records, client at warning (ms)"]
        / results["tool + 10k debug records, client at warning, forwarder off (ms)"]
    )
    results["ratio default-level debug calls / none (Python's own cost)"] = (
        results["tool + 10k debug calls, logger at Python's default (ms)"] / results["tool, no logging calls (ms)"]
    )

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:9.3f}")
    verdicts = Verdicts()
    verdicts.check("completion p50 / trivial tool call p50 (ratio)", results["ratio complete / trivial call"], 1.3)
    verdicts.check(
        "10k debug records: client at warning / logs off (ratio)",
        results["ratio client at warning / client logs off"],
        1.10,
    )
    verdicts.check(
        "10k debug records: nbmcp forwarder on / off (ratio)", results["ratio forwarder on / off (nbmcp's share)"], 1.10
    )
    return verdicts.report()


if __name__ == "__main__":
    sys.exit(main())
