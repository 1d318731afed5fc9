"""Starting, stopping, reloading and token rotation of the in-kernel server, in a real kernel."""

from __future__ import annotations

import json
import os
import socket

import httpx
import pytest

from tests.conftest import KernelHandle, connect, free_port, start_kernel

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
    banner = kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error().stdout
    assert "MCP server for this kernel at" in banner and "note:" not in banner, banner  # port 0: any port, no news
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
    # Loaded again in the same kernel: the same URL and token, so the configs clients hold still work.
    assert second["url"] in out.stdout and second["url"] == first["url"] and second["token"] == first["token"]
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
    assert (after["url"], after["token"]) == (before["url"], before["token"])
    assert "tools:" in kernel.run("%mcp").raise_for_error().stdout


def http_config(kernel: KernelHandle, client: str = "vscode") -> tuple[str, str]:
    """The URL and token of the config `%mcp config vscode` prints, as a user pastes it into VS Code."""
    printed = json.loads(kernel.run(f"%mcp config {client}").raise_for_error().stdout)
    (entry,) = printed["servers" if client == "vscode" else "mcpServers"].values()
    return entry["url"], entry["headers"]["Authorization"].removeprefix("Bearer ")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "stop, start",
    [("%mcp stop", "%mcp start"), ("%unload_ext nbmcp", "%load_ext nbmcp"), ("%reload_ext nbmcp", "")],
    ids=["stop-start", "unload-load", "reload"],
)
async def test_a_restart_keeps_url_token_and_mode_so_pasted_configs_still_work(
    kernel: KernelHandle, stop: str, start: str
) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    kernel.run("%mcp mode execute").raise_for_error()
    url, token = http_config(kernel)
    kernel.run(stop).raise_for_error()
    if start:
        kernel.run(start).raise_for_error()
    assert "mode is execute" in kernel.run("%mcp mode").raise_for_error().stdout
    async with connect(url, token) as client:  # the config pasted before the restart
        names = {t.name for t in (await client.list_tools()).tools}
        assert "execute" in names
    kernel.run("%mcp mode tools").raise_for_error()


def test_a_kept_port_that_was_taken_meanwhile_gives_way_and_the_banner_says_so(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    before = info(kernel)
    kernel.run("%mcp stop").raise_for_error()
    with socket.socket() as squatter:  # another program takes the port while the server is stopped
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the old connections' TIME_WAIT
        squatter.bind(("127.0.0.1", before["port"]))
        squatter.listen()
        out = kernel.run("%mcp start").raise_for_error().stdout
        after = info(kernel)
    assert after["port"] != before["port"] and after["url"] in out
    assert f"port {before['port']}" in out and "taken" in out and "%mcp config vscode|cursor" in out
    assert after["token"] == before["token"]  # only what had to change changed
    # The next restart keeps the new port, and says nothing more.
    kernel.run("%mcp stop").raise_for_error()
    out = kernel.run("%mcp start").raise_for_error().stdout
    assert info(kernel)["url"] == after["url"] and "taken" not in out


def test_asking_for_a_new_port_gets_one(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    before = info(kernel)
    out = kernel.run("%mcp start --new-port").raise_for_error().stdout
    assert "already serving" in out and "%mcp stop" in out  # a running server is not moved under its clients
    kernel.run("%mcp stop").raise_for_error()
    out = kernel.run("%mcp start --new-port").raise_for_error().stdout
    after = info(kernel)
    assert after["port"] != before["port"] and after["url"] in out and after["token"] == before["token"]
    kernel.run("nbmcp.stop()").raise_for_error()
    explicit = free_port()
    kernel.run(f"nbmcp.start(port={explicit})").raise_for_error()  # an explicit port wins over the kept one
    assert info(kernel)["port"] == explicit
    bad = kernel.run("%mcp start --port 5")
    assert "UsageError" in bad.stderr and "%mcp start [--new-port]" in bad.stderr


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


def test_what_the_user_asks_for_wins_over_what_was_kept(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    mode = "nbmcp.inkernel.lifecycle.current_server().mcp_server.mode"
    kernel.run("nbmcp.stop()\nnbmcp.start(mode='read-only', token='a-token-the-user-chose')").raise_for_error()
    assert kernel.value(mode) == "read-only" and info(kernel)["token"] == "a-token-the-user-chose"
    kernel.run("%mcp stop\n%mcp start").raise_for_error()  # ... and is kept from then on
    assert kernel.value(mode) == "read-only" and info(kernel)["token"] == "a-token-the-user-chose"
    kernel.run("nbmcp.stop()\nnbmcp.start(mode='tools', token='')").raise_for_error()  # empty: a new random one
    assert kernel.value(mode) == "tools" and len(info(kernel)["token"]) > 30


def test_gc_freeze_is_off_by_default_and_freezes_once_when_asked(kernel: KernelHandle) -> None:
    kernel.run("%load_ext nbmcp\nimport gc, nbmcp").raise_for_error()
    assert kernel.value("gc.get_freeze_count()") == 0  # the user's kernel is left as it is
    try:
        kernel.run("nbmcp.stop()\nget_ipython().config.NbMCP.gc_freeze = True\nnbmcp.start()").raise_for_error()
        frozen = kernel.value("gc.get_freeze_count()")
        assert frozen > 50_000  # the kernel's, IPython's and nbmcp's objects
        # A restart does not freeze again: what the user made since stays collectable.
        kernel.run("made_since = [[i] for i in range(10_000)]\nnbmcp.stop()\nnbmcp.start()").raise_for_error()
        assert kernel.value("gc.get_freeze_count()") <= frozen  # frozen objects freed by refcount leave it
    finally:
        kernel.run("gc.unfreeze()\nget_ipython().config.NbMCP.gc_freeze = False\ndel made_since").raise_for_error()
