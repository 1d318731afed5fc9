"""The parser-differential tests of ``query`` (``tests/frames/test_sql_spark.py``) with many random examples:
generated queries with quotes, backslashes, ``E'…'``, dollar quotes, nested comments, unicode escapes and
backticks around a payload that reads a file or an environment variable, over Spark and DuckDB. CI runs a
few derandomized examples.

    python stress/differential.py [--examples N]      # default 2000 per engine; needs Java and pyspark

Each run draws new examples; a failure prints hypothesis' shrunk query, which belongs in the test as an
``@example``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per engine (default 2000)")
    args = parser.parse_args()
    env = {**os.environ, "NBMCP_DIFFERENTIAL_RANDOM": "1", "NBMCP_DIFFERENTIAL_EXAMPLES": str(args.examples)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--timeout=36000",
        "tests/frames/test_sql_spark.py",
        "-k",
        "differential",
    ]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
