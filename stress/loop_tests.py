"""Run timing-sensitive tests many times in a row; report how many runs failed (issue 10: "0 failures in 50").

Each run is a fresh pytest process (fixtures, servers and kernels started anew), so a leak or a race that
needs a cold start shows up too. The failing runs' output is kept in the temp dir printed at the end.

Run: ``python stress/loop_tests.py [--runs 50] [TEST ...]``; without tests, the ones of ``nbmcp serve``'s
hardening (concurrent starts, disconnect mid-execute in both eras, cancel-then-execute).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = [
    "tests/serve/test_concurrent_starts.py",
    "tests/serve/test_isolation.py::test_a_client_that_drops_mid_execute_interrupts_its_cell",
    "tests/serve/test_isolation.py::test_a_handshake_client_that_drops_mid_execute_interrupts_its_cell",
    "tests/serve/test_isolation.py::test_kernels_are_capped_and_abandoned_ones_reaped",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("tests", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    keep = Path(tempfile.mkdtemp(prefix="nbmcp-loop-"))
    failed = 0
    began = time.monotonic()
    for run in range(1, args.runs + 1):
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.tests]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            failed += 1
            (keep / f"run-{run}.log").write_text(done.stdout + done.stderr)
        print(f"run {run}/{args.runs}: {'ok' if done.returncode == 0 else 'FAILED'} ({failed} failed)", flush=True)
    print(f"{args.runs} runs, {failed} failed, {time.monotonic() - began:.0f} s; logs of failed runs in {keep}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
