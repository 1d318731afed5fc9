"""Issue 10 item 6: many kernel starts at once, each must become ready (and run a cell), none may leak.

Starts ``--total`` kernels with ``KernelSession.start`` in batches of ``--batch`` concurrent starts, runs one
cell in each, shuts them down, and checks every kernel process is gone. Prints the failures with their
errors; exit status 1 if any start failed or any kernel was left.

Run: ``JUPYTER_RUNTIME_DIR=/tmp/rt-stress python stress/concurrent_starts.py [--total 500] [--batch 16]``
(about 15-20 minutes for 500 on 2 busy cores).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbmcp.serve.kernel.session import KernelSession
from tests.serve.test_tools import pid_alive as alive


async def one(ready_timeout: float) -> tuple[float, int | None, str | None]:
    started = time.monotonic()
    try:
        session = await KernelSession.start(ready_timeout=ready_timeout)
    except Exception as exc:
        return time.monotonic() - started, None, repr(exc)
    took = time.monotonic() - started
    try:
        outcome = await session.execute("1 + 1", timeout=60)
        error = None if outcome.status == "ok" else f"first cell: {outcome.status} {outcome.message}"
        return took, session.pid, error
    finally:
        await session.shutdown()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    args = parser.parse_args()
    failures: list[str] = []
    pids: list[int] = []
    times: list[float] = []
    done = 0
    began = time.monotonic()
    while done < args.total:
        n = min(args.batch, args.total - done)
        results = await asyncio.gather(*(one(args.ready_timeout) for _ in range(n)))
        for took, pid, error in results:
            times.append(took)
            if pid is not None:
                pids.append(pid)
            if error is not None:
                failures.append(error)
        done += n
        print(
            f"{done}/{args.total} started, {len(failures)} failed, slowest {max(t for t, _, _ in results):.1f} s",
            flush=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        await asyncio.sleep(0.2)
    left = [pid for pid in pids if alive(pid)]
    times.sort()
    print(
        f"\n{args.total} starts in batches of {args.batch}: {len(failures)} failed, {len(left)} kernels left, "
        f"start median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s, total {time.monotonic() - began:.0f} s"
    )
    for failure in failures[:10]:
        print("  failed:", failure)
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
