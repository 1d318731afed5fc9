"""Run the tests that wait on timing (cancel, interrupt, timeout, disconnect, busy pools) many times in a row.

    python stress/flaky.py [-n ROUNDS] [-j JOBS] [-w WORD,WORD...] [PATHS...]   # default 50 rounds over tests/

A test that fails now and then is a bug: this prints every failure with its round and exits 1 if any.
Each round is a fresh pytest process (fresh kernels and servers). ``-j`` runs that many rounds at once, each
with a Jupyter runtime dir of its own: the rounds mostly wait (on timeouts, interrupts, kernel starts), and
rounds side by side also load the machine as a busy laptop would. Tests are chosen by their function's name
(pytest's ``-k`` would also match markers such as ``timeout``, i.e. almost all).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def run_round(selected: list[str], log: Path) -> tuple[list[str], str]:
    """One pytest process over ``selected``: its failure lines and its summary line; a failed round's whole
    output goes to ``log``."""
    with tempfile.TemporaryDirectory(prefix="nbmcp-flaky-") as runtime:
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": runtime}
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", *selected]
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = run.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    if run.returncode not in (0, 5) and not failed:
        failed = [f"pytest exited {run.returncode}: {run.stderr.strip()[-500:]}"]
    if failed:
        log.write_text(run.stdout + "\n--- stderr ---\n" + run.stderr)
    return failed, lines[-1] if lines else f"exit {run.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=50)
    parser.add_argument("-j", "--jobs", type=int, default=1, help="rounds run at once (default: %(default)s)")
    parser.add_argument(
        "-w", "--words", default=",".join(TIMING), help="test-name words selecting the tests (default: %(default)s)"
    )
    parser.add_argument("paths", nargs="*", default=["tests"])
    args = parser.parse_args()
    selected = timing_tests(args.paths, args.words.split(","))
    logs = Path(tempfile.mkdtemp(prefix="nbmcp-flaky-logs-"))
    print(f"{len(selected)} tests, {args.rounds} rounds, {args.jobs} at a time; failed rounds' output in {logs}")
    failures: list[str] = []
    done = 0
    lock = threading.Lock()
    started = time.monotonic()
    sys.stdout.flush()

    def one(round_: int) -> None:
        nonlocal done
        failed, summary = run_round(selected, logs / f"round-{round_}.log")
        with lock:
            done += 1
            failures.extend(f"round {round_}: {line}" for line in failed)
            print(f"round {round_} ({done}/{args.rounds} done): {summary}", flush=True)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, range(1, args.rounds + 1)))
    minutes = (time.monotonic() - started) / 60
    print(f"\n{args.rounds} rounds in {minutes:.1f} min, {len(failures)} failure(s)")
    for failure in failures:
        print(failure)
    if not failures:
        logs.rmdir()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
