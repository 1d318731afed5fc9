"""mcp-remote (npm ``mcp-remote``), the stdio proxy Claude Desktop users put in front of a remote server:
``mcp-remote URL --header "Authorization: Bearer TOKEN"``, driven as a stdio server by the Python SDK's client,
calls a tool on each HTTP server (each refuses a call without the token, so the header got through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.clients import bearer, client_env, npm_client
from tests.clients.conftest import Http, InKernel

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def proxy() -> Path:  # first: a skip starts no server
    return npm_client("mcp-remote")


@pytest.fixture(scope="module")
def targets(proxy: Path, serve_http: Http, inkernel: InKernel, jupyter_ext: Http) -> dict[str, Http]:
    return {"serve-http": serve_http, "kernel-http": inkernel.http, "jupyter": jupyter_ext}


def through_mcp_remote(proxy: Path, target: Http, home: Any) -> Client:
    header = f"Authorization: {bearer(target.token)}"
    params = StdioServerParameters(
        command=str(proxy), args=[target.url, "--header", header], env=client_env(home), cwd=str(home)
    )
    return Client(params, mode="legacy")


@pytest.mark.parametrize(
    ("server", "tool", "arguments"),
    [
        ("serve-http", "execute", {"code": "6*7"}),
        ("kernel-http", "double", {"x": 21}),
        ("jupyter", "execute", {"code": "6*7"}),
    ],
)
async def test_a_tool_call_through_mcp_remote(
    proxy: Path, targets: dict[str, Http], tmp_path: Any, server: str, tool: str, arguments: dict[str, Any]
) -> None:
    async with through_mcp_remote(proxy, targets[server], tmp_path) as client:
        assert tool in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(tool, arguments)
        assert not result.is_error and result.content[0].text == "42", result
