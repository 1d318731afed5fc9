"""Both official SDK clients in both protocol eras against every server: the Python SDK (``mcp.Client``,
``mode="legacy"`` / ``mode="2026-07-28"``) and the TypeScript SDK v2 (npm ``@modelcontextprotocol/client``,
``versionNegotiation`` legacy / pinned 2026-07-28, Node 22). Each lists the tools, calls one, and on the
in-kernel server reads a page of rows and gets a prompt; the era the connection negotiated is checked too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from nbmcp.client import connect
from tests.clients import NODE_BIN, SERVERS, client_env, npm_client, run
from tests.clients.conftest import Http, InKernel
from tests.node import NODE_DIR

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

MODERN = "2026-07-28"
ERAS = ["legacy", "modern"]
PAGE = "nbmcp://objects/orders/rows/28/5"


def matrix() -> list[Any]:
    return [(server, era) for server in SERVERS for era in ERAS]


@pytest.fixture(scope="module")
def targets(
    serve_stdio: dict[str, Any], serve_http: Http, inkernel: InKernel, jupyter_ext: Http
) -> dict[str, dict[str, Any] | Http]:
    return {
        "serve-stdio": serve_stdio,
        "serve-http": serve_http,
        "kernel-http": inkernel.http,
        "kernel-bridge": inkernel.bridge,
        "jupyter": jupyter_ext,
    }


def call_for(server: str) -> tuple[str, dict[str, Any]]:
    return ("double", {"x": 21}) if server.startswith("kernel") else ("execute", {"code": "6*7"})


def check(server: str, era: str, protocol_version: str, tools: set[str], first_text: str) -> None:
    assert (protocol_version == MODERN) == (era == "modern"), protocol_version
    assert call_for(server)[0] in tools
    assert first_text == "42"


@pytest.mark.parametrize(("server", "era"), matrix())
async def test_python_sdk(targets: dict[str, Any], tmp_path: Path, server: str, era: str) -> None:
    target = targets[server]
    mode = MODERN if era == "modern" else "legacy"
    if isinstance(target, Http):
        client = connect(target.url, target.token, mode=mode)
    else:
        params = StdioServerParameters(
            command=target["command"], args=target["args"], env=client_env(tmp_path), cwd=str(tmp_path)
        )
        client = Client(params, mode=mode)
    tool, arguments = call_for(server)
    async with client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result
        check(server, era, client.protocol_version, tools, result.content[0].text)
        if server == "kernel-http":
            page = json.loads((await client.read_resource(PAGE)).contents[0].text)
            assert [row["id"] for row in page["rows"]] == [28, 29]
            prompt = await client.get_prompt("explain_column", {"column": "total"})
            assert prompt.messages[0].content.text == "Explain the column total of the orders frame."


@pytest.fixture(scope="module")
def ts_script() -> Path:
    npm_client("node")
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "client").exists():
        pytest.skip(f"@modelcontextprotocol/client is not installed in {NODE_DIR} (.ci/run installs it)")
    # ESM resolves packages from the script's directory: run a copy beside the installed modules.
    script = NODE_DIR / "nbmcp_sdk_client.mjs"
    script.write_text((Path(__file__).parent / "ts" / "sdk_client.mjs").read_text())
    return script


@pytest.mark.parametrize(("server", "era"), matrix())
def test_typescript_sdk(ts_script: Path, targets: dict[str, Any], tmp_path: Path, server: str, era: str) -> None:
    target = targets[server]
    tool, arguments = call_for(server)
    spec: dict[str, Any] = {"era": era, "tool": tool, "arguments": arguments}
    if isinstance(target, Http):
        spec |= {"url": target.url, "token": target.token}
    else:
        spec |= {"command": target["command"], "args": target["args"], "cwd": str(tmp_path)}
        spec["env"] = {k: v for k, v in client_env(tmp_path).items() if k in ("HOME", "PATH")}
    if server == "kernel-http":
        spec |= {"resource": PAGE, "prompt": "explain_column", "promptArguments": {"column": "total"}}
    ran = run([NODE_BIN / "node", ts_script, json.dumps(spec)], env=client_env(tmp_path), cwd=tmp_path, timeout=90)
    assert ran.returncode == 0, ran
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["era"] == era and not out["result"].get("isError"), out
    check(server, era, out["version"], set(out["tools"]), out["result"]["content"][0]["text"])
    if server == "kernel-http":
        assert [row["id"] for row in json.loads(out["resource"])["rows"]] == [28, 29]
        assert out["prompt"] == "Explain the column total of the orders frame."


def test_the_ts_probe_fails_on_a_wrong_token(ts_script: Path, targets: dict[str, Any], tmp_path: Path) -> None:
    spec = {"era": "legacy", "url": targets["kernel-http"].url, "token": "wrong", "tool": "double", "arguments": {}}
    failed = subprocess.run(
        [str(NODE_BIN / "node"), str(ts_script), json.dumps(spec)], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode != 0 and "401" in failed.stderr, failed.stderr[-2000:]
