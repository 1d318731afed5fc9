"""`nbmcp serve --server-url` against real kernel gateways: Jupyter Kernel Gateway (in this venv) and
Enterprise Gateway (which pins an old jupyter_client/jupyter_server: it runs from its own venv, with ipykernel 6,
whose kernels have no subshells).

The Enterprise Gateway tests write outside the repository: the first run creates that venv at
``~/.cache/nbmcp-eg-venv`` (``$NBMCP_EG_VENV`` to put it elsewhere), installing its packages from PyPI, and later
runs reuse it. Delete the folder to reclaim the space; the tests skip, saying why, where it cannot be created."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from tests.conftest import free_port
from tests.mcp_results import text_of
from tests.serve.test_tools import serve_params

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

EG_VENV = Path(os.environ.get("NBMCP_EG_VENV", Path.home() / ".cache" / "nbmcp-eg-venv"))
EG_REQUIREMENTS = ["jupyter_enterprise_gateway>=3.2", "ipykernel>=6.29,<7"]


class Gateway:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, token: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.token = token
        self.log = log

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, trust_env=False, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextmanager
def gateway(cmd: list[str], tmp: Path, *, env: dict[str, str] | None = None, timeout: float = 90) -> Iterator[Gateway]:
    """Run a gateway command (``{port}`` and ``{token}`` filled in) on loopback until it answers; stop it."""
    port, token = free_port(), secrets.token_hex(16)
    log = tmp / "gateway.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "JUPYTER_RUNTIME_DIR": str(tmp), **(env or {})}
    full_env.pop("JUPYTER_TOKEN", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [a.format(port=port, token=token) for a in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp,
            start_new_session=True,
        )
    gw = Gateway(proc, f"http://127.0.0.1:{port}/", token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}:\n{gw.log_text()}")
            with suppress(httpx.HTTPError):
                if gw.api("GET", "api/kernelspecs").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {timeout} s:\n{gw.log_text()}")
            time.sleep(0.2)
        yield gw
    finally:
        # SIGTERM: the gateway shuts its kernels down; then whatever is left of its process group
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def serve_on(gw: Gateway, *args: str, cwd: Path):
    params = serve_params("--server-url", gw.url, "--no-record", *args, cwd=cwd)
    params.env = {**(params.env or {}), "JUPYTER_TOKEN": gw.token}
    return params


def started_cell(client: Client, code: str) -> tuple[asyncio.Future, asyncio.Event]:
    """Run ``code`` in the background; the event is set when its first output arrives (as progress)."""
    started = asyncio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        started.set()

    call = client.call_tool("execute", {"code": code}, progress_callback=on_progress)
    return asyncio.ensure_future(call), started


# -- Jupyter Kernel Gateway -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("kg")
    cmd = [
        sys.executable,
        "-m",
        "kernel_gateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        "--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        "--KernelGatewayApp.auth_token={token}",
    ]
    with gateway(cmd, tmp) as gw:
        yield gw


async def test_kernel_gateway_start_execute_interrupt_inspect(kg: Gateway, tmp_path: Path) -> None:
    with open(tmp_path / "stderr.txt", "w+") as errlog:
        async with Client(stdio_client(serve_on(kg, cwd=tmp_path), errlog=errlog)) as client:
            result = await client.call_tool(
                "execute", {"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})"}
            )
            assert not result.is_error, text_of(result)
            assert result.structured_content["kernel"]["mode"] == "remote"
            # interrupt: a long cell stops at the timeout, the kernel and its state live on
            timed = await client.call_tool("execute", {"code": "import time\ntime.sleep(60)", "timeout": 1})
            assert timed.structured_content["status"] == "timeout", text_of(timed)
            # an explicit interrupt() while a cell runs
            with anyio.fail_after(30):
                running, started = started_cell(client, "print('started', flush=True)\ntime.sleep(60)")
                await started.wait()  # the cell runs: its first output arrived as progress
                stopped = await client.call_tool("interrupt", {})
                assert not stopped.is_error, text_of(stopped)
                interrupted = await running
            assert "KeyboardInterrupt" in text_of(interrupted) or interrupted.structured_content["status"] != "ok"
            listed = await client.call_tool("list_variables", {})
            assert "df" in {v["name"] for v in listed.structured_content["variables"]}, text_of(listed)
            shown = await client.call_tool("inspect_variable", {"name": "df"})
            assert not shown.is_error and "DataFrame" in text_of(shown), text_of(shown)
            rows = await client.call_tool("read_rows", {"name": "df"})
            assert not rows.is_error and "rows 0-1 of 2" in text_of(rows), text_of(rows)
            kernel_id = result.structured_content["kernel"]["id"]
        errlog.seek(0)
        stderr = errlog.read()
    assert "Message signing is disabled" not in stderr, stderr
    assert kg.api("GET", f"api/kernels/{kernel_id}").status_code == 404  # started by nbmcp: shut down on exit


async def test_kernel_gateway_existing_without_listing_says_how_to_fix_or_attaches_by_id(
    kg: Gateway, tmp_path: Path
) -> None:
    async with Client(stdio_client(serve_on(kg, "--existing", cwd=tmp_path))) as client:
        refused = await client.call_tool("execute", {"code": "1"})
    assert refused.is_error
    message = text_of(refused)
    assert "does not list its kernels" in message and "--JupyterWebsocketPersonality.list_kernels=True" in message
    assert "--existing KERNEL_ID" in message
    # the human's kernel on the gateway, attached by its id
    response = kg.api("POST", "api/kernels", json={"name": "python3"})
    response.raise_for_status()
    kernel_id = response.json()["id"]
    try:
        async with Client(stdio_client(serve_on(kg, "--existing", kernel_id, cwd=tmp_path))) as client:
            result = await client.call_tool("execute", {"code": "attached = 6 * 7\nattached"})
            assert not result.is_error and text_of(result).startswith("42"), text_of(result)
            assert result.structured_content["kernel"]["id"] == kernel_id
        assert kg.api("GET", f"api/kernels/{kernel_id}").status_code == 200  # attached: never shut down by us
    finally:
        kg.api("DELETE", f"api/kernels/{kernel_id}")


# -- Enterprise Gateway --------------------------------------------------------------------------------------


def eg_venv() -> Path:
    """Enterprise Gateway's own venv (created once, bounded; reused while its gateway script is there)."""
    script = EG_VENV / "bin" / "jupyter-enterprisegateway"
    if script.exists():
        return EG_VENV
    where = f"at {EG_VENV} ($NBMCP_EG_VENV sets where; delete it to reclaim the space)"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(EG_VENV)], check=True, timeout=300)
        pip = [str(EG_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *EG_REQUIREMENTS]
        subprocess.run(pip, check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"could not create Enterprise Gateway's own venv {where} (no network?): {exc}")
    # outside the repository, kept for the next run: say so where a test run reports what it did
    warnings.warn(f"created Enterprise Gateway's own venv {where}", stacklevel=1)
    return EG_VENV


@pytest.fixture(scope="module")
def eg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    import getpass

    venv = eg_venv()
    tmp = tmp_path_factory.mktemp("eg")
    refused = sorted({"root", getpass.getuser()})  # whoever runs the tests is refused by default, as root is
    cmd = [
        str(venv / "bin" / "jupyter-enterprisegateway"),
        "--EnterpriseGatewayApp.ip=127.0.0.1",
        "--EnterpriseGatewayApp.port={port}",
        "--EnterpriseGatewayApp.port_retries=0",
        "--EnterpriseGatewayApp.auth_token={token}",
        f"--EnterpriseGatewayApp.unauthorized_users={refused!r}",
    ]
    # the gateway's kernels are its venv's python3 (ipykernel 6: no subshells)
    with gateway(cmd, tmp, env={"JUPYTER_PATH": str(venv / "share" / "jupyter")}) as gw:
        yield gw


async def test_enterprise_gateway_refusal_shows_its_own_reason(eg: Gateway, tmp_path: Path) -> None:
    async with Client(stdio_client(serve_on(eg, cwd=tmp_path))) as client:
        refused = await client.call_tool("execute", {"code": "1"})
    assert refused.is_error
    message = text_of(refused)
    assert "is not authorized to start kernel" in message and "KERNEL_USERNAME" in message, message
    assert "--server-token" not in message, message  # not blamed on the token


async def test_enterprise_gateway_kernel_env_and_inspection_while_busy_without_subshells(
    eg: Gateway, tmp_path: Path
) -> None:
    params = serve_on(eg, "--kernel-env", "KERNEL_USERNAME=alice", "--kernel-env", "KERNEL_PROJECT=p 1", cwd=tmp_path)
    async with Client(stdio_client(params)) as client:
        env = "os.environ['KERNEL_USERNAME'], os.environ['KERNEL_PROJECT']"
        code = f"import os, ipykernel\n({env}, ipykernel.version_info[0])"
        result = await client.call_tool("execute", {"code": code})
        assert not result.is_error, text_of(result)
        assert text_of(result).startswith("('alice', 'p 1', 6)"), text_of(result)
        await client.call_tool("execute", {"code": "data = list(range(5))"})
        idle = await client.call_tool("list_variables", {})
        assert not idle.is_error and "data" in text_of(idle) and "waited" not in text_of(idle), text_of(idle)
        # while a cell runs, ipykernel 6 cannot answer: the inspection waits for the cell, and says so
        with anyio.fail_after(60):
            running, started = started_cell(client, "import time\nprint('started', flush=True)\ntime.sleep(2)")
            await started.wait()
            listed = await client.call_tool("list_variables", {})
            assert not listed.is_error, text_of(listed)
            assert "data" in {v["name"] for v in listed.structured_content["variables"]}
            assert "no subshells (ipykernel < 7)" in text_of(listed) and "waited" in text_of(listed), text_of(listed)
            assert not (await running).is_error


def test_kernel_env_must_be_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    from nbmcp.cli import main

    assert main(["serve", "--server-url", "http://127.0.0.1:9/", "--kernel-env", "KERNEL_USERNAME"]) == 1
    err = capsys.readouterr().err
    assert "--kernel-env 'KERNEL_USERNAME': expected KEY=VALUE" in err, err
