"""nbmcp on a real JupyterHub: configurable-http-proxy, the dummy authenticator, local-process spawner, and
alice's single-user server with nbmcp's extension. An MCP client outside the Hub reaches
``{hub}/user/alice/nbmcp/mcp`` and ``.../nbmcp/kernels/{id}/mcp`` with a Hub API token scoped
``access:servers!user=alice``; no token or bob's token is refused with a message; ``nbmcp serve
--server-url {hub}/user/alice/`` works with the Hub token, and names bob when his server is not running."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from nbmcp.client import connect
from nbmcp.serve.kernel.session import KernelSession
from tests.hub_helpers import HubProcess, chp_command, jupyterhub
from tests.mcp_results import MODES, text_of
from tests.serve.test_tools import serve_params

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(180),  # the first test's setup starts the Hub, its proxy and alice's server
    pytest.mark.skipif(chp_command() is None, reason="configurable-http-proxy (npm) is not installed"),
]

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    with jupyterhub(("alice", "bob")) as hub:
        hub.start_server("alice")
        yield hub


@pytest.fixture(scope="module")
def tokens(hub: HubProcess) -> dict[str, str]:
    return {name: hub.create_token(name) for name in ("alice", "bob")}


@pytest.fixture(scope="module")
def notebook(hub: HubProcess, tokens: dict[str, str]) -> str:
    """alice opens analysis.ipynb (as JupyterLab does, through her server's REST API) and loads nbmcp in it."""
    body = {"path": "analysis.ipynb", "type": "notebook", "name": "analysis.ipynb", "kernel": {"name": "python3"}}
    response = httpx.post(
        hub.user_url("alice") + "api/sessions",
        json=body,
        headers={"Authorization": f"token {tokens['alice']}"},
        trust_env=False,
        timeout=60,
    )
    response.raise_for_status()
    kernel_id = response.json()["kernel"]["id"]
    code = (
        "%load_ext nbmcp\nimport nbmcp\nfrom_alice = 20\n"
        "@nbmcp.tool\ndef double(x: int) -> int:\n    '''Twice x.'''\n    return 2 * x\n"
    )

    async def cell() -> None:
        session = await KernelSession.remote(hub.user_url("alice"), tokens["alice"], kernel_id=kernel_id)
        try:
            outcome = await session.execute(code, timeout=60)
            assert outcome.status == "ok", outcome.error
        finally:
            await session.shutdown()  # attached: disconnects, the kernel stays alice's

    import anyio

    anyio.run(cell)
    return kernel_id


@pytest.mark.parametrize("mode", MODES)
async def test_an_outside_client_uses_both_routes_with_a_scoped_hub_token(
    hub: HubProcess, tokens: dict[str, str], notebook: str, mode: str
) -> None:
    base = hub.user_url("alice")
    async with connect(base + "nbmcp/mcp", tokens["alice"], mode=mode) as client:
        listing = await client.call_tool("list_notebooks", {})
        assert not listing.is_error, text_of(listing)
        assert f"analysis.ipynb: kernel {notebook}" in text_of(listing)
        result = await client.call_tool("execute", {"code": "from_alice + 22", "notebook": "analysis.ipynb"})
        assert not result.is_error and "42" in text_of(result), text_of(result)
    async with connect(base + f"nbmcp/kernels/{notebook}/mcp", tokens["alice"], mode=mode) as client:
        doubled = await client.call_tool("double", {"x": 21})
        assert not doubled.is_error and "42" in text_of(doubled), text_of(doubled)


@pytest.mark.parametrize("route", ["nbmcp/mcp", "nbmcp/kernels/{kernel}/mcp"])
def test_no_token_or_another_users_token_is_refused_with_a_message(
    hub: HubProcess, tokens: dict[str, str], notebook: str, route: str
) -> None:
    url = hub.user_url("alice") + route.format(kernel=notebook)
    for headers, says in (
        ({}, "no token was sent"),
        ({"Authorization": f"Bearer {tokens['bob']}"}, "did not accept this token"),
        ({"Authorization": "Bearer not-a-token"}, "did not accept this token"),
    ):
        response = httpx.post(url, json=INIT, headers={**MCP_HEADERS, **headers}, trust_env=False, timeout=30)
        assert response.status_code == 403, response.text
        assert "mcp-session-id" not in response.headers
        message = response.json()["message"]
        assert says in message, message
        assert "access:servers!user=alice" in message and "hub/token" in message, message
    # alice's own token opens it (the SDK app answers the initialize)
    ok = httpx.post(
        url, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {tokens['alice']}"}, trust_env=False
    )
    assert ok.status_code == 200, ok.text


async def test_serve_server_url_through_the_hub(
    hub: HubProcess, tokens: dict[str, str], notebook: str, tmp_path: Path
) -> None:
    # the token comes from the client config's env block, as `nbmcp config` writes it
    params = serve_params("--server-url", hub.user_url("alice"), "--no-record", cwd=tmp_path)
    params.env = {**(params.env or {}), "JUPYTER_TOKEN": tokens["alice"]}
    with open(tmp_path / "stderr.txt", "w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool("execute", {"code": "1 + 1"})
            assert not result.is_error and text_of(result).startswith("2"), text_of(result)
            kernel = result.structured_content["kernel"]
            assert kernel["mode"] == "remote" and kernel["server"] == hub.user_url("alice")
            # a kernel nbmcp started on alice's server, not her notebook's
            assert kernel["id"] != notebook
        errlog.seek(0)
        stderr = errlog.read()
    # the WebSocket session never signs: jupyter_client's warning would be a false alarm
    assert "Message signing is disabled" not in stderr, stderr
    kernels = httpx.get(
        hub.user_url("alice") + "api/kernels", headers={"Authorization": f"token {tokens['alice']}"}, trust_env=False
    ).json()
    assert kernel["id"] not in {k["id"] for k in kernels}  # the started kernel was shut down on exit


async def test_a_stopped_user_server_is_named_with_what_to_start(
    hub: HubProcess, tokens: dict[str, str], tmp_path: Path
) -> None:
    params = serve_params("--server-url", hub.user_url("bob"), "--no-record", cwd=tmp_path)
    params.env = {**(params.env or {}), "JUPYTER_TOKEN": tokens["bob"]}
    async with Client(stdio_client(params)) as client:
        result = await client.call_tool("execute", {"code": "1 + 1"})
    assert result.is_error
    message = text_of(result)
    assert "bob's JupyterHub server is not running" in message, message
    assert f"{hub.url}hub/api/users/bob/server" in message and f"{hub.url}hub/home" in message, message


@pytest.mark.parametrize("user", ["bob", "alice"])
def test_bridge_to_a_hub_route_names_a_stopped_server_or_the_token_it_needs(
    hub: HubProcess, tokens: dict[str, str], user: str
) -> None:
    # bob's server is not running; alice's is, but is sent bob's token
    env = {**os.environ, "NBMCP_TOKEN": tokens["bob"]}
    url = hub.user_url(user) + "nbmcp/mcp"
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp.cli", "bridge", "--url", url],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    if user == "bob":
        assert "bob's JupyterHub server is not running" in done.stderr, done.stderr
        assert f"{hub.url}hub/home" in done.stderr
    else:
        assert "answered 403" in done.stderr and "access:servers!user=alice" in done.stderr, done.stderr
    assert tokens["bob"] not in done.stderr  # never the token
