"""The fuzz suite of ``tests/test_fuzz.py`` with many random examples (CI runs a few, derandomized).

    python stress/fuzz.py [EXAMPLES]      # default 2000 per server and era

Each run draws new examples; a failure prints hypothesis' shrunk example, which belongs in a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "2000"
    env = {**os.environ, "NBMCP_FUZZ_RANDOM": "1", "NBMCP_FUZZ_EXAMPLES": examples}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout=3600", "tests/test_fuzz.py"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
