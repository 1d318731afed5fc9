"""Starting, stopping, reloading and token rotation of the in-kernel server, in a real kernel."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.conftest import KernelHandle, connect, start_kernel

pytestmark = pytest.mark.timeout(90)


def info(kernel: KernelHandle) -> dict:
    return kernel.value(
        "None if nbmcp.info() is None else {'url': nbmcp.info().url, 'token': nbmcp.info().token, "
        "'port': nbmcp.info().port, 'file': nbmcp.info().connection_file}"
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def server_threads(kernel: KernelHandle) -> list[str]:
    return kernel.value("[t.name for t in __import__('threading').enumerate() if t.name.startswith('nbmcp')]")


def test_unload_frees_everything_and_load_again_works(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    first = info(kernel)
    assert sorted(server_threads(kernel)) == ["nbmcp-audit", "nbmcp-http"]
    assert os.path.exists(first["file"])

    out = kernel.run("%unload_ext nbmcp").raise_for_error()
    assert "stopped" in out.stdout
    assert info(kernel) is None
    assert not os.path.exists(first["file"])  # connection file removed
    assert port_is_free(first["port"])  # port freed
    assert server_threads(kernel) == []  # thread joined
    with pytest.raises(httpx.ConnectError):
        httpx.get(first["url"], timeout=2)

    out = kernel.run("%load_ext nbmcp").raise_for_error()
    second = info(kernel)
    assert second["url"] in out.stdout and second["token"] != first["token"]
    response = httpx.post(
        second["url"],
        headers={"Authorization": f"Bearer {second['token']}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        timeout=5,
    )
    assert response.status_code in (200, 400)  # served (a ping before initialize is the SDK's to judge)


def test_mcp_stop_and_start(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    before = info(kernel)
    out = kernel.run("%mcp stop").raise_for_error()
    assert "stopped" in out.stdout and info(kernel) is None
    assert port_is_free(before["port"])
    out = kernel.run("%mcp start").raise_for_error()
    after = info(kernel)
    assert after is not None and after["url"] in out.stdout
    assert "tools:" in kernel.run("%mcp").raise_for_error().stdout


@pytest.mark.anyio
async def test_token_rotation_locks_out_the_old_token(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    old = info(kernel)
    async with connect(old["url"], old["token"]) as client:
        await client.list_tools()
    out = kernel.run("%mcp token --rotate").raise_for_error()
    assert old["file"] in out.stdout
    new = info(kernel)
    assert new["token"] != old["token"]
    with open(new["file"]) as f:
        assert new["token"] in f.read()  # clients that read the connection file find the new token
    refused = httpx.post(old["url"], headers={"Authorization": f"Bearer {old['token']}"}, json={}, timeout=5)
    assert refused.status_code == 401
    async with connect(new["url"], new["token"]) as client:
        assert (await client.list_tools()).tools


def test_connection_file_is_removed_when_the_kernel_exits() -> None:
    handle = start_kernel()
    try:
        handle.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
        path = info(handle)["file"]
        assert os.path.exists(path)
    finally:
        handle.kc.stop_channels()
        handle.km.shutdown_kernel(now=False)  # a clean exit runs atexit
    assert not os.path.exists(path)


def test_tools_registered_before_start_are_served_when_it_starts(kernel: KernelHandle) -> None:
    kernel.run("%unload_ext nbmcp").raise_for_error()
    kernel.run("import nbmcp\n@nbmcp.tool\ndef early() -> str:\n    return 'registered first'").raise_for_error()
    assert kernel.value("nbmcp.info() is None")  # with no server, nothing listens
    kernel.run("%load_ext nbmcp").raise_for_error()
    served = kernel.value("sorted(nbmcp.inkernel.lifecycle.current_server().mcp_server.snapshot().served_tools)")
    assert "early" in served
