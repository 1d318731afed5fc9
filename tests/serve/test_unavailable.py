"""A stdio command that cannot start still serves the MCP session: the handshake and every call say what went
wrong (a client hides stderr and would show only "Connection closed"), and it ends quietly when the client goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from nbmcp.serve.unavailable import TOOL_NAME
from tests.mcp_results import text_of

pytestmark = pytest.mark.anyio


async def check_every_answer_says(params: StdioServerParameters, said: str, tmp_path: Path, mode: str) -> str:
    """Through the SDK's stdio client: the handshake's instructions, the tool list and any tool call carry
    ``said``; the command's stderr (returned) is one line and no traceback."""
    errors = tmp_path / f"stderr-{mode}.txt"
    with open(errors, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            assert said in (client.instructions or ""), client.instructions
            tools = (await client.list_tools()).tools
            assert [t.name for t in tools] == [TOOL_NAME] and said in (tools[0].description or "")
            for name in ("execute", TOOL_NAME, "exectue"):
                result = await client.call_tool(name, {"code": "1"})
                assert result.is_error and said in text_of(result), text_of(result)
            assert (await client.list_resources()).resources == []
    stderr = errors.read_text()
    assert said in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    return stderr


def serve(*args: str, runtime: Path, cwd: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp", "serve", "--no-record", *args],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
        cwd=str(cwd),
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_existing_with_no_kernel_says_so_in_the_session(tmp_path: Path, mode: str) -> None:
    params = serve("--existing", runtime=tmp_path, cwd=tmp_path)
    await check_every_answer_says(params, f"no kernel connection file (kernel-*.json) in {tmp_path}", tmp_path, mode)


@pytest.mark.timeout(60)
async def test_existing_with_a_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    params = serve("--existing", "missing.json", runtime=tmp_path, cwd=tmp_path)
    await check_every_answer_says(params, "no kernel connection file 'missing.json'", tmp_path, "legacy")


@pytest.mark.timeout(60)
async def test_a_setting_that_cannot_work_says_so_in_the_session(tmp_path: Path) -> None:
    params = serve("--timeout", "0", runtime=tmp_path, cwd=tmp_path)
    await check_every_answer_says(params, "--timeout must be positive", tmp_path, "legacy")


@pytest.mark.timeout(60)
def test_with_stdin_closed_it_ends_quietly(tmp_path: Path) -> None:
    for existing in (["--existing", "missing.json"], ["--existing"]):
        done = subprocess.run(
            [sys.executable, "-m", "nbmcp", "serve", "--no-record", *existing],
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        assert done.returncode == 1 and done.stdout == "", done
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr
        assert "no kernel connection file" in done.stderr
