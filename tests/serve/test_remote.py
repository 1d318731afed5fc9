"""`nbmcp serve --existing` (a kernel started by jupyter_client) and `--server-url` (a real Jupyter Server)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from tests.conftest import free_port, start_kernel
from tests.mcp_results import text_of
from tests.serve.test_tools import serve_params

pytestmark = pytest.mark.anyio

JUPYTER_TOKEN = "remote-test-token-0123456789"


@pytest.mark.timeout(90)
async def test_existing_kernel_is_shared_and_never_shut_down(tmp_path: Path) -> None:
    handle = start_kernel()
    try:
        handle.run("from_human = [1, 2, 3]").raise_for_error()
        params = serve_params("--existing", handle.km.connection_file, "--no-record", cwd=tmp_path)
        async with Client(params) as client:
            result = await client.call_tool("execute", {"code": "sum(from_human)"})
            assert result.content[0].text == "6"
            assert result.structured_content["kernel"]["mode"] == "attached"
            assert result.structured_content["kernel"]["id"] == handle.kernel_id
            listed = await client.call_tool("list_variables", {})
            assert "from_human" in {v["name"] for v in listed.structured_content["variables"]}
            timed = await client.call_tool("execute", {"code": "import time\ntime.sleep(30)", "timeout": 1})
            assert timed.structured_content["status"] == "timeout"
            refused = await client.call_tool("restart", {})
            assert refused.is_error and "attached" in text_of(refused)
            await client.call_tool("execute", {"code": "from_assistant = 'hi'"})
        # the server exited; the human's kernel lives on, with the assistant's work in it
        assert handle.km.is_alive()
        assert handle.run("from_assistant").result == "'hi'"
    finally:
        handle.shutdown()


@pytest.mark.timeout(90)
async def test_existing_alone_skips_dead_kernels_and_names_the_file(tmp_path: Path) -> None:
    from mcp.client.stdio import stdio_client

    from tests.serve.test_connect import leave_dead_kernel_file, start_kernel_in

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    live = start_kernel_in(runtime, "live")
    try:
        live.run("from_human = 41").raise_for_error()
        dead = leave_dead_kernel_file(runtime, "dead")  # newer than the live one
        params = serve_params("--existing", "--no-record", cwd=tmp_path)
        params.env = {**(params.env or {}), "JUPYTER_RUNTIME_DIR": str(runtime)}
        with open(tmp_path / "stderr.txt", "w+") as errlog:
            started = time.monotonic()
            async with Client(stdio_client(params, errlog=errlog)) as client:
                result = await client.call_tool("execute", {"code": "from_human + 1"})
                elapsed = time.monotonic() - started
                assert text_of(result).startswith("42"), text_of(result)
                assert result.structured_content["kernel"]["connection_file"] == live.km.connection_file
            errlog.seek(0)
            stderr = errlog.read()
        assert elapsed < 10  # not the 10 s wait on the dead kernel, then a failure
        assert f"attaching to the kernel of {live.km.connection_file}" in stderr
        assert "skipped 1 newer file" in stderr and str(dead) not in stderr
    finally:
        live.shutdown()


@pytest.mark.timeout(60)
def test_existing_alone_with_only_dead_kernels_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    from tests.serve.test_connect import leave_dead_kernel_file

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    leave_dead_kernel_file(runtime, "dead1", age=10)
    leave_dead_kernel_file(runtime, "dead2")
    failed = subprocess.run(
        [sys.executable, "-m", "nbmcp", "serve", "--existing", "--no-record"],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert failed.returncode == 1
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "skipped all 2 kernel connection files" in failed.stderr
    assert str(runtime) in failed.stderr and "--existing CONNECTION_FILE" in failed.stderr


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("jupyter")
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", f"--port={port}",
        "--ip=127.0.0.1", f"--ServerApp.token={JUPYTER_TOKEN}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url + "api/status", headers={"Authorization": f"token {JUPYTER_TOKEN}"}, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "jupyter server exited"
            time.sleep(0.1)
        else:
            raise AssertionError("jupyter server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def kernels(url: str) -> list[dict]:
    return httpx.get(url + "api/kernels", headers={"Authorization": f"token {JUPYTER_TOKEN}"}).json()


@pytest.mark.timeout(120)
async def test_server_url_starts_drives_and_deletes_a_remote_kernel(jupyter_server: str, tmp_path: Path) -> None:
    before = {k["id"] for k in kernels(jupyter_server)}
    env_params = serve_params("--server-url", jupyter_server, "--no-record", cwd=tmp_path)
    env_params.env = {**(env_params.env or os.environ), "JUPYTER_TOKEN": JUPYTER_TOKEN}  # token not in argv
    async with Client(env_params) as client:
        result = await client.call_tool("execute", {"code": "x = 21\nprint('hello', flush=True)\nx * 2"})
        assert [b.text for b in result.content[:2]] == ["hello\n", "42"]
        kernel = result.structured_content["kernel"]
        assert kernel["mode"] == "remote" and kernel["server"] == jupyter_server
        assert kernel["id"] in {k["id"] for k in kernels(jupyter_server)} - before

        started = time.monotonic()
        timed = await client.call_tool("execute", {"code": "import time\ntime.sleep(60)", "timeout": 1})
        assert timed.structured_content["status"] == "timeout"
        assert time.monotonic() - started < 3  # interrupted through the REST API
        assert (await client.call_tool("execute", {"code": "x"})).content[0].text == "21"

        rows = await client.call_tool("list_variables", {})
        assert "x" in {v["name"] for v in rows.structured_content["variables"]}

        restarted = await client.call_tool("restart", {})
        assert not restarted.is_error, text_of(restarted)
        gone = await client.call_tool("execute", {"code": "'x' in globals()"})
        assert gone.content[0].text == "False"
    # we started it, so it is deleted when we exit
    deadline = time.monotonic() + 10
    while kernel["id"] in {k["id"] for k in kernels(jupyter_server)} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel["id"] not in {k["id"] for k in kernels(jupyter_server)}


@pytest.mark.timeout(60)
async def test_server_url_with_a_wrong_token_is_a_clear_error(jupyter_server: str, tmp_path: Path) -> None:
    params = serve_params("--server-url", jupyter_server, "--server-token", "wrong", "--no-record", cwd=tmp_path)
    async with Client(params) as client:
        result = await client.call_tool("execute", {"code": "1"})
    assert result.is_error and ("403" in text_of(result) or "401" in text_of(result))
    assert "--server-token" in text_of(result)


def env_without_jupyter_tokens() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JPY_API_TOKEN")}


@pytest.mark.timeout(60)
async def test_no_token_in_the_clients_environment_says_how_to_add_it(jupyter_server: str, tmp_path: Path) -> None:
    params = serve_params("--server-url", jupyter_server, "--no-record", cwd=tmp_path)
    params.env = env_without_jupyter_tokens()  # as a client that does not pass the shell's environment
    async with Client(params) as client:
        result = await client.call_tool("execute", {"code": "1"})
    message = text_of(result)
    assert result.is_error and ("403" in message or "401" in message)
    assert "no token was given" in message and '"env": {"JUPYTER_TOKEN"' in message
    assert "nbmcp config" in message
    assert "Traceback" not in message


@pytest.mark.timeout(90)
async def test_the_printed_server_url_config_works_once_its_token_is_filled_in(
    jupyter_server: str, tmp_path: Path
) -> None:
    import json

    from mcp.client.stdio import StdioServerParameters

    printed = subprocess.run(
        [sys.executable, "-m", "nbmcp", "config", "claude", "--", "--server-url", jupyter_server, "--no-record"],
        env={**os.environ, "JUPYTER_TOKEN": JUPYTER_TOKEN},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert JUPYTER_TOKEN not in printed.stdout + printed.stderr  # never the real token from the environment
    assert "environment" in printed.stderr
    entry = json.loads(printed.stdout)["mcpServers"]["jupyter"]
    assert entry["env"] == {"JUPYTER_TOKEN": "<your Jupyter token>"}

    def launch(env: dict[str, str]) -> StdioServerParameters:
        # the client's environment: only what the config says (over the SDK's safe defaults: PATH, HOME...)
        return StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))

    async with Client(launch(entry["env"])) as client:  # pasted without filling in the token
        unfilled = await client.call_tool("execute", {"code": "1"})
    assert unfilled.is_error and "placeholder" in text_of(unfilled)
    async with Client(launch({"JUPYTER_TOKEN": JUPYTER_TOKEN})) as client:
        result = await client.call_tool("execute", {"code": "6 * 7"})
    assert not result.is_error and result.content[0].text == "42"
