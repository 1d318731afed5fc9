"""Run the tests that wait on timing (cancel, interrupt, timeout, disconnect, busy pools) many times in a row.

    python stress/flaky.py [-n ROUNDS] [-w WORD,WORD...] [PATHS...]     # default 50 rounds over tests/

A test that fails now and then is a bug: this prints every failure with its round and exits 1 if any.
Each round is a fresh pytest process (fresh kernels and servers), run one after the other. Tests are chosen
by their function's name (pytest's ``-k`` would also match markers such as ``timeout``, i.e. almost all).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("cancel", "interrupt", "timeout", "timed_out", "abandon", "busy", "disconnect", "concurrent", "signal")


def timing_tests(paths: list[str], words: list[str]) -> list[str]:
    """Node ids of the tests under ``paths`` whose function name contains one of ``words``."""
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return [n for n in listed if "::" in n and any(w in n.rsplit("::", 1)[-1].lower() for w in words)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=50)
    parser.add_argument(
        "-w", "--words", default=",".join(TIMING), help="test-name words selecting the tests (default: %(default)s)"
    )
    parser.add_argument("paths", nargs="*", default=["tests"])
    args = parser.parse_args()
    selected = timing_tests(args.paths, args.words.split(","))
    print(f"{len(selected)} tests, {args.rounds} rounds", flush=True)
    failures: list[str] = []
    started = time.monotonic()
    for round_ in range(1, args.rounds + 1):
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", *selected]
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        lines = run.stdout.strip().splitlines()
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        failures += [f"round {round_}: {line}" for line in failed]
        summary = lines[-1] if lines else f"exit {run.returncode}"
        print(f"round {round_}/{args.rounds}: {summary}", flush=True)
        if run.returncode not in (0, 5) and not failed:
            failures.append(f"round {round_}: pytest exited {run.returncode}: {run.stderr.strip()[-500:]}")
    minutes = (time.monotonic() - started) / 60
    print(f"\n{args.rounds} rounds in {minutes:.1f} min, {len(failures)} failure(s)")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
