"""Resource bombs against ``query`` (issue 19, items 2-3), each in a fresh process: its peak RSS, time, answer.

    python stress/query_bombs.py [--as-gb 6] [--timeout 30] [--only SUBSTRING]

Every shape runs through ``nbmcp.frames.query.sql.run_json`` (what ``nbmcp serve`` runs in a kernel; the in-kernel
tool runs the same engine) over a 100,000-row pandas frame ``big``, in a child process whose address space is
capped (RLIMIT_AS, ``--as-gb``) so that a bound that does not hold fails there instead of taking the machine.
The spill shapes run in a temporary working directory, checked afterwards for a ``.tmp`` DuckDB would have
left there. On Linux a query that may build values (text, lists: anything but numbers) runs in a forked child of the
kernel (``nbmcp.frames.query.sql_child``): "peak MB" is the kernel's, "child MB" the child's. Exit status 1 when the
kernel's peak RSS passes 2.6 GB (DuckDB's 2 GB memory_limit, which bounds the queries that build only numbers and run
in the kernel, plus the process), the child's passes 4 GB (its address-space budget: DuckDB's 1.8 GiB memory_limit,
1 GiB of values, the result bounds), an answer passes 40 MiB, spilling passes 1.1 GB, or a ``.tmp`` appears.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK_LIMIT_MB = 2600  # the kernel: DuckDB's memory_limit for the queries that build only numbers, and the process
CHILD_LIMIT_MB = 4000  # the forked child: its address space is capped at its budget
SPILL_LIMIT_MB = 1100  # c.NbMCP.query_max_spill_bytes: 1 GiB by default
ANSWER_LIMIT = 40 * 1024 * 1024  # the rows shown are refused past 32 MiB of Arrow; their JSON is of that order

SHAPES = {
    "repeat 2e9 (the issue's 40-byte query)": "SELECT repeat('x', 2000000000) AS s",
    "repeat 60M (allowed, cut in the engine)": "SELECT repeat('x', 60000000) AS s",
    "repeat in a list": "SELECT [repeat('x', 30000000), repeat('y', 30000000)] AS l",
    "struct of huge strings": "SELECT {'a': repeat('x', 30000000), 'b': repeat('y', 30000000)} AS st",
    "range() list 2e9": "SELECT range(0, 2000000000) AS r",
    "range() list 4M (allowed, cut)": "SELECT range(0, 4000000) AS r",
    "generate_series list 2e9": "SELECT generate_series(1, 2000000000) AS r",
    "list(i) aggregate 200M": "SELECT list(i) AS l FROM range(200000000) t(i)",
    "list(i) aggregate 3M per group": "SELECT i % 3 AS g, list(i) AS l FROM range(9000000) t(i) GROUP BY g",
    "string_agg(repeat) 3M x 1000": "SELECT string_agg(repeat('x', 1000), ',') AS s FROM range(3000000)",
    "string_agg(repeat) 50k x 1000 (allowed, cut)": "SELECT string_agg(repeat('x', 1000), ',') AS s FROM range(50000)",
    "lpad 2e9": "SELECT lpad('x', 2000000000, 'y') AS s",
    "list_resize 2e9": "SELECT list_resize([1], 2000000000) AS l",
    "cross join with aggregates": "SELECT count(*), sum(a.v * b.v) FROM big a, big b",
    "recursive doubling": "WITH RECURSIVE t(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM t "
    "WHERE strlen(s) < 2000000000) SELECT max(strlen(s)) FROM t",
    "wide rows, 1000 of them": "SELECT v, repeat('x', 1900) AS a, repeat('y', 1900) AS b FROM big",
    "spill: distinct over a cross join": "SELECT count(*) FROM (SELECT DISTINCT a.v * 1000000 + b.v FROM big a, big b)",
    # amplifiers: a value much larger than the values it is built from
    "replace with a long replacement": "SELECT replace(repeat('x', 1000000), 'x', repeat('y', 10000)) AS s",
    "regexp_replace with a long replacement": "SELECT regexp_replace(repeat('x', 1000000), 'x', repeat('y', 10000), "
    "'g') AS s",
    "printf width 2e9": "SELECT printf('%2000000000d', 1) AS s",
    "format width 2e9": "SELECT format('{:>2000000000}', 1) AS s",
    "concat chain of 60M values": "WITH a AS (SELECT repeat('x', 60000000) AS s), b AS (SELECT s || s || s || s || s "
    "|| s || s || s AS s FROM a) SELECT concat(s, s, s, s) AS s FROM b",
    "list_concat chain of 4M lists": "WITH a AS (SELECT range(4000000) AS l), b AS (SELECT list_concat(l, l, l, l, l, "
    "l, l, l) AS l FROM a) SELECT list_concat(b.l, b.l, b.l, b.l, b.l, b.l, b.l, b.l) AS l FROM b",
    "repeat on a list": "SELECT repeat([1, 2, 3, 4, 5, 6, 7, 8], 20000000) AS l",
    "bar width 2e9": "SELECT bar(1, 0, 1, 2000000000) AS s",
    "to_base64(repeat 60M)": "SELECT to_base64(repeat('x', 60000000)::BLOB) AS s",
    "repeat 60M on 100 rows": "SELECT repeat('x', 60000000) AS s FROM range(100)",
    "list_transform of repeats": "SELECT list_transform(range(4000000), lambda x: repeat('x', 1000)) AS l",
    "sorted 60M values on 100 rows": "SELECT repeat('x', 60000000) || i AS s FROM range(100) t(i) ORDER BY s DESC",
    "string_agg of 60M values": "SELECT string_agg(repeat('x', 60000000), ',') AS s FROM range(100)",
    "list of 60M values": "SELECT list(repeat('x', 60000000)) AS l FROM range(100)",
    "array_to_string of two 40M values": "SELECT array_to_string([repeat('x', 40000000), repeat('y', 40000000)], "
    "',') AS s",
    # a list of many guarded-size values was built outside the memory limit (2.7 GB, DuckDB 2.0.1): refused now
    "list_transform of 60M values": "SELECT array_to_string(list_transform(range(100), lambda x: "
    "repeat('x', 60000000)), ',') AS s",
    "concat_ws with a 60M separator": "SELECT concat_ws(repeat('x', 60000000), 'a', 'b', 'c', 'd', 'e', 'f', 'g', "
    "'h', 'i', 'j') AS s",
    # DuckDB builds 2,048 values of an expression at once, outside its memory limit: the guards bound one value
    # (11.7 GB in the kernel, DuckDB 2.0.1, before queries ran in a forked child)
    "a vector of 60M values": "SELECT max(length(repeat('x', 60000000) || i)) AS m FROM range(200) t(i)",
    "a vector of 1 MB values (allowed)": "SELECT max(length(repeat('x', 1000000) || i)) AS m FROM range(4096) t(i)",
    "50 nested upper() of 64 KiB values": "SELECT max(length("
    + "upper(lower(" * 25
    + "repeat('x', 65536) || i"
    + "))" * 25
    + ")) AS m FROM range(100000) t(i)",
    "a list of 200 references to 64 KiB values": "WITH a AS (SELECT repeat('x', 65536) || i AS s FROM range(100000) "
    "t(i)) SELECT max(len([" + ", ".join(["s"] * 200) + "])) AS m FROM a",
    "list_transform capturing a 64 KiB value": "WITH a AS (SELECT repeat('x', 65536) || i AS s FROM range(1000) t(i)) "
    "SELECT max(len(list_transform(range(8000), lambda x: s))) AS m FROM a",
}

CHILD = """
import glob, json, os, resource, sys, tempfile, threading, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import numpy as np, pandas as pd
from nbmcp.frames.query import sql
big = pd.DataFrame({{"v": np.arange(100_000)}})
def peak():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
def spilled():  # bytes in <cwd>/.tmp (DuckDB's default) and in nbmcp's spill directories of this process
    spill = glob.glob(os.path.join(tempfile.gettempdir(), f"nbmcp-query-spill-{{os.getpid()}}-*"))
    total = 0
    for top in [".tmp", *spill]:
        for root, _, files in os.walk(top):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
    return total
disk, done = [0], threading.Event()
def watch():
    while not done.wait(0.2):
        disk[0] = max(disk[0], spilled())
threading.Thread(target=watch, daemon=True).start()
before, started = peak(), time.perf_counter()
try:
    answer = sql.run_json({query!r}, 1000, {timeout!r})
except BaseException as exc:
    answer = json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}})
done.set()
data = json.loads(answer)
child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # the forked child's (sql_child)
print(json.dumps({{"before_mb": before, "peak_mb": peak(), "child_mb": child_mb,
                  "s": round(time.perf_counter() - started, 1),
                  "answer_bytes": len(answer), "error": " ".join((data.get("error") or "").split())[:150],
                  "disk_mb": disk[0] // 2**20,
                  "cut": len(data.get("cut") or []), "cwd": sorted(os.listdir("."))}}))
"""


def run(name: str, query: str, cap: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as cwd:
        code = textwrap.dedent(CHILD.format(cap=cap, query=query, timeout=timeout))
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout + 120
        )
    if done.returncode != 0:
        return {"name": name, "crashed": done.returncode, "stderr": done.stderr[-300:]}
    return {"name": name, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as-gb", type=float, default=6.0, help="address-space cap of each child (GB)")
    parser.add_argument("--timeout", type=float, default=30.0, help="the query time limit (s)")
    parser.add_argument("--only", default="", help="run the shapes whose name contains this")
    args = parser.parse_args()
    cap = int(args.as_gb * 1024**3)
    failed = False
    print(f"{'shape':46} {'peak MB':>7} {'child MB':>8} {'disk MB':>7} {'s':>5} {'answer':>8}  outcome")
    for name, query in SHAPES.items():
        if args.only not in name:
            continue
        r = run(name, query, cap, args.timeout)
        if "crashed" in r:
            failed = True
            print(f"{name:46} {'-':>7} {'-':>8} {'-':>7} {'-':>5} {'-':>8}  CRASHED {r['crashed']}: {r['stderr']}")
            continue
        bad = (
            r["peak_mb"] > PEAK_LIMIT_MB
            or r["child_mb"] > CHILD_LIMIT_MB
            or r["answer_bytes"] > ANSWER_LIMIT
            or ".tmp" in r["cwd"]
        )
        bad |= r["disk_mb"] > SPILL_LIMIT_MB
        failed |= bad
        outcome = r["error"] or f"ok, {r['cut']} column(s) cut"
        row = f"{name:46} {r['peak_mb']:>7} {r['child_mb']:>8} {r['disk_mb']:>7} {r['s']:>5} {r['answer_bytes']:>8}"
        print(f"{row}  {'FAIL ' if bad else ''}{outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
