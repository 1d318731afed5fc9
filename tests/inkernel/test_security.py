"""Security of the in-kernel server, checked with raw HTTP requests the SDK client cannot send."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from tests.conftest import KernelHandle, free_port, start_kernel

pytestmark = pytest.mark.timeout(60)

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TOKEN = "a-configured-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def configured() -> dict:
    """A kernel whose server takes its token and port from NBMCP_TOKEN / NBMCP_PORT."""
    port = free_port()
    handle = start_kernel(env={"NBMCP_TOKEN": TOKEN, "NBMCP_PORT": str(port)})
    try:
        handle.run("%load_ext nbmcp").raise_for_error()
        handle.run("import nbmcp").raise_for_error()
        info = handle.value("{'url': nbmcp.info().url, 'port': nbmcp.info().port}")
        yield {"kernel": handle, "port": port, **info}
    finally:
        handle.shutdown()


def post(url: str, headers: dict[str, str], body: object = INITIALIZE) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url, headers={**ACCEPT, **headers}, content=content, timeout=10)


def test_env_overrides_port_and_token(configured: dict) -> None:
    assert configured["url"] == f"http://127.0.0.1:{configured['port']}/mcp"
    response = post(configured["url"], {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_missing_or_wrong_token_is_401(configured: dict, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = post(configured["url"], headers)
    assert response.status_code == 401
    assert "bearer token" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost:1", "0.0.0.0:{port}"]
)
def test_foreign_host_is_403(configured: dict, host: str) -> None:
    response = post(
        configured["url"], {"Authorization": f"Bearer {TOKEN}", "Host": host.format(port=configured["port"])}
    )
    assert response.status_code == 403
    assert "Host" in response.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_own_host_names_are_allowed(configured: dict, host: str) -> None:
    response = post(
        configured["url"], {"Authorization": f"Bearer {TOKEN}", "Host": host.format(port=configured["port"])}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9",
        "http://127.0.0.1:9",
        "https://evil.example",
        "null",
        "http://localhost",
        "http://evil.example:{port}",
    ],
)
def test_foreign_origin_is_403(configured: dict, origin: str) -> None:
    response = post(
        configured["url"],
        {"Authorization": f"Bearer {TOKEN}", "Origin": origin.format(port=configured["port"])},
    )
    assert response.status_code == 403
    assert "Origin" in response.json()["error"]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_own_origin_is_allowed(configured: dict, origin: str) -> None:
    response = post(
        configured["url"],
        {"Authorization": f"Bearer {TOKEN}", "Origin": origin.format(port=configured["port"])},
    )
    assert response.status_code == 200


def test_malformed_request_gets_a_jsonrpc_error_not_a_hang(configured: dict) -> None:
    response = post(configured["url"], {"Authorization": f"Bearer {TOKEN}"}, body=b"{not json")
    assert response.status_code in (400, 200)
    assert response.json()["error"]["code"] == -32700


def test_no_execute_tool_without_opt_in(configured: dict) -> None:
    kernel: KernelHandle = configured["kernel"]
    names = kernel.value("sorted(nbmcp.inkernel.lifecycle.current_server().mcp_server.snapshot().served_tools)")
    assert "execute" not in names


def test_binding_elsewhere_checks_that_address() -> None:
    """Bound to another loopback address, the Host must name that address (not 127.0.0.1)."""
    import nbmcp
    from nbmcp.inkernel.config import InKernelSettings
    from nbmcp.inkernel.lifecycle import InKernelServer
    from nbmcp.inkernel.registry import Registry
    from nbmcp.inkernel.server import NbMCPServer

    settings = dataclasses.replace(InKernelSettings.from_config(), ip="127.0.0.2", port=0, token=TOKEN)
    server = InKernelServer(NbMCPServer(Registry(), settings))
    try:
        url = server.info.url
        assert url.startswith("http://127.0.0.2:")
        ok = post(url, {"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        spoofed = post(url, {"Authorization": f"Bearer {TOKEN}", "Host": f"127.0.0.1:{server.port}"})
        assert spoofed.status_code == 403
    finally:
        server.stop()
    assert nbmcp.info() is None


def test_non_loopback_binding_requires_a_token() -> None:
    from nbmcp.inkernel.config import InKernelSettings
    from nbmcp.inkernel.lifecycle import InKernelServer
    from nbmcp.inkernel.registry import Registry
    from nbmcp.inkernel.server import NbMCPServer

    settings = dataclasses.replace(InKernelSettings.from_config(), ip="0.0.0.0", port=0, token="")
    mcp_server = NbMCPServer(Registry(), settings)
    try:
        with pytest.raises(ValueError, match="token is required"):
            InKernelServer(mcp_server)
    finally:
        mcp_server.close()
