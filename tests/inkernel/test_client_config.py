"""The configs `%mcp config` prints work as pasted: the stdio one starts where the venv is not on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import TextContent

from nbmcp.inkernel.lifecycle import ServerInfo, bridge_command
from tests.conftest import KernelHandle, start_kernel
from tests.inkernel.conftest import start_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

# What a desktop client launching a command has: the system's PATH, not the venv's bin.
SYSTEM_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="module")
def claude_entry(kernel: KernelHandle) -> dict:
    start_server(kernel, "@nbmcp.tool\ndef triple(x: int) -> int:\n    return 3 * x\n")
    printed = kernel.run("%mcp config claude").raise_for_error().stdout
    servers = json.loads(printed)["mcpServers"]
    (entry,) = servers.values()
    return entry


def test_the_claude_config_names_an_absolute_command(claude_entry: dict, kernel: KernelHandle) -> None:
    command = claude_entry["command"]
    assert os.path.isabs(command) and os.access(command, os.X_OK), command
    assert claude_entry["args"] == ["bridge", "--kernel-id", kernel.kernel_id]
    token = kernel.value("nbmcp.info().token")
    assert token not in json.dumps(claude_entry)  # the bridge reads it from the connection file


async def test_the_printed_claude_config_starts_without_the_venv_on_path(claude_entry: dict) -> None:
    params = StdioServerParameters(
        command=claude_entry["command"],
        args=claude_entry["args"],
        env={"PATH": SYSTEM_PATH, **claude_entry.get("env", {})},
    )
    async with Client(params, mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"triple", "read_rows"} <= names
        result = await client.call_tool("triple", {"x": 14})
        assert not result.is_error
        assert [c.text for c in result.content if isinstance(c, TextContent)] == ["42"]


def test_without_the_script_the_bridge_runs_as_python_m_nbmcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An environment whose bin has no `nbmcp` script (e.g. installed without entry points): `python -m nbmcp`.
    python = tmp_path / "python"
    python.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(python))
    assert bridge_command() == [str(python), "-m", "nbmcp", "bridge"]
    monkeypatch.undo()
    # ... and that command is a working CLI (the module runs without the script, PATH or not).
    help_text = subprocess.run(
        [sys.executable, "-m", "nbmcp", "bridge", "--help"],
        env={"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--kernel-id" in help_text


def test_outside_a_kernel_the_claude_config_passes_the_token_in_its_environment() -> None:
    # No kernel id, so no connection file the bridge can find by id: it gets the URL, and the token as $NBMCP_TOKEN
    # (not on the command line, where other users could see it).
    info = ServerInfo(
        url="http://127.0.0.1:5/mcp",
        token="t0ken",
        host="127.0.0.1",
        port=5,
        server_id="pid1",
        kernel_id=None,
        connection_file=None,
    )
    (entry,) = info.client_config("claude")["mcpServers"].values()
    assert entry["args"][-2:] == ["--url", "http://127.0.0.1:5/mcp"]
    assert entry["env"]["NBMCP_TOKEN"] == "t0ken" and "t0ken" not in entry["args"]


async def test_a_kernel_with_its_own_runtime_dir_passes_it_to_the_bridge(tmp_path: Path) -> None:
    # The connection file is where the kernel's environment says; the client launching the bridge lacks that
    # environment, so the config carries it.
    handle = start_kernel(env={"JUPYTER_RUNTIME_DIR": str(tmp_path)})
    try:
        handle.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
        (entry,) = json.loads(handle.run("%mcp config claude").raise_for_error().stdout)["mcpServers"].values()
        assert entry["env"] == {"JUPYTER_RUNTIME_DIR": str(tmp_path)}
        params = StdioServerParameters(
            command=entry["command"], args=entry["args"], env={"PATH": SYSTEM_PATH, **entry["env"]}
        )
        async with Client(params, mode="legacy") as client:
            assert "read_rows" in {tool.name for tool in (await client.list_tools()).tools}
    finally:
        handle.shutdown()
