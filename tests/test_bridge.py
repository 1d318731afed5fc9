"""`nbmcp bridge`: a stdio-only client reaches a `%load_ext nbmcp` kernel through its connection file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import KernelHandle, free_port
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def in_kernel(kernel: KernelHandle) -> dict:
    kernel.run(
        """
%load_ext nbmcp
import nbmcp, pandas as pd
orders = pd.DataFrame({"id": range(30), "total": [i * 2 for i in range(30)]})
nbmcp.expose(orders, "orders")

@nbmcp.tool
def double(x: int) -> int:
    return 2 * x
"""
    ).raise_for_error()
    return {"kernel_id": kernel.kernel_id}


def bridge(kernel_id: str) -> Client:
    params = StdioServerParameters(command=sys.executable, args=["-m", "nbmcp.cli", "bridge", "--kernel-id", kernel_id])
    return Client(params, mode="legacy")


async def test_tools_and_resources_through_the_bridge(in_kernel: dict) -> None:
    async with bridge(in_kernel["kernel_id"][:8]) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"double", "read_rows", "list_objects"} <= names
        assert text_of(await client.call_tool("double", {"x": 21})) == "42"
        page = (await client.read_resource("nbmcp://objects/orders/rows/28/5")).contents[0]
        assert [r["id"] for r in json.loads(page.text)["rows"]] == [28, 29]
        bad = await client.call_tool("double", {"x": "two"})
        assert bad.is_error and "x" in text_of(bad)


async def test_list_changed_is_forwarded(in_kernel: dict, kernel: KernelHandle) -> None:
    changed = anyio.Event()

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "nbmcp.cli", "bridge", "--kernel-id", in_kernel["kernel_id"]]
    )
    async with Client(params, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        kernel.run("@nbmcp.tool\ndef triple(x: int) -> int:\n    return 3 * x").raise_for_error()
        with anyio.fail_after(15):
            await changed.wait()
        assert "triple" in {t.name for t in (await client.list_tools()).tools}


def test_list_shows_the_server_without_its_token(in_kernel: dict, kernel: KernelHandle) -> None:
    token = kernel.value("nbmcp.info().token")
    listed = subprocess.run(
        [sys.executable, "-m", "nbmcp.cli", "list", "--json"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert in_kernel["kernel_id"] in listed and token not in listed


def test_unknown_kernel_id_names_the_running_ones(in_kernel: dict) -> None:
    failed = subprocess.run(
        [sys.executable, "-m", "nbmcp.cli", "bridge", "--kernel-id", "no-such-kernel"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert failed.returncode != 0
    assert "no-such-kernel" in failed.stderr and in_kernel["kernel_id"][:8] in failed.stderr
    assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1


def run_bridge_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbmcp", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_unknown_kernel_id_with_no_server_running_says_how_to_start_one(tmp_path: Path) -> None:
    failed = run_bridge_cli("--kernel-id", "zzz", env={"JUPYTER_RUNTIME_DIR": str(tmp_path)})
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "'zzz'" in failed.stderr and "none is running" in failed.stderr and "%load_ext nbmcp" in failed.stderr


def test_url_with_nothing_listening_is_one_line_that_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    failed = run_bridge_cli("--url", url)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()], failed.stderr  # one line, no traceback
    assert f"nothing answers at {url}" in failed.stderr and "nbmcp list" in failed.stderr


def test_url_with_a_wrong_token_says_which_token_to_use(in_kernel: dict, kernel: KernelHandle) -> None:
    url = kernel.value("nbmcp.info().url")
    failed = run_bridge_cli("--url", url, env={"NBMCP_TOKEN": "not-the-token"})
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "401" in failed.stderr and "token was refused" in failed.stderr and "NBMCP_TOKEN" in failed.stderr


def test_token_option_is_documented_with_the_safer_variable() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "nbmcp", "bridge", "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "--token TOKEN" in shown
    assert "NBMCP_TOKEN" in " ".join(shown.split())


@pytest.mark.timeout(120)
def test_a_line_over_4_mib_gets_a_parse_error_and_the_bridge_serves_on(in_kernel: dict, tmp_path: Path) -> None:
    from nbmcp.transport.stdio import MAX_MESSAGE_BYTES
    from tests.serve.test_stdio import RawStdioServer, rss_mb

    bridge = RawStdioServer(tmp_path, ("bridge", "--kernel-id", in_kernel["kernel_id"]))
    try:
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        bridge.request({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert "result" in bridge.reply(lambda r: r.get("id") == 0)
        bridge.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
        before = rss_mb(bridge.proc.pid)
        bridge.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "' + b"x" * (20 << 20) + b'"}}\n')
        error = bridge.reply(lambda r: "error" in r)
        assert error["error"]["code"] == -32700 and str(MAX_MESSAGE_BYTES) in error["error"]["message"]
        params = {"name": "double", "arguments": {"x": 21}}
        bridge.request({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params})
        assert bridge.reply(lambda r: r.get("id") == 2)["result"]["content"][0]["text"] == "42"
        assert rss_mb(bridge.proc.pid) - before < 3 * MAX_MESSAGE_BYTES / 2**20
    finally:
        bridge.close()


@pytest.mark.timeout(60)
def test_deeply_nested_json_is_a_parse_error_and_the_bridge_lives_on(in_kernel: dict, tmp_path: Path) -> None:
    from tests.serve.test_stdio import RawStdioServer, check_deep_lines_are_parse_errors

    bridge = RawStdioServer(tmp_path, ("bridge", "--kernel-id", in_kernel["kernel_id"]))
    try:
        check_deep_lines_are_parse_errors(bridge)
    finally:
        bridge.close()
    assert bridge.proc.returncode == 0


@pytest.mark.timeout(60)
async def test_a_bridge_that_cannot_connect_says_why_in_the_session(
    in_kernel: dict, kernel: KernelHandle, tmp_path: Path
) -> None:
    from tests.serve.test_unavailable import check_every_answer_says

    dead = f"http://127.0.0.1:{free_port()}/mcp"
    url = kernel.value("nbmcp.info().url")
    for target, token, said in (
        (dead, "x", f"nothing answers at {dead}"),
        (url, "not-the-token", "the token was refused: set $NBMCP_TOKEN"),
    ):
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "nbmcp", "bridge", "--url", target],
            env={**os.environ, "NBMCP_TOKEN": token},
        )
        await check_every_answer_says(params, said, tmp_path, "legacy")
