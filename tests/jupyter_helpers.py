"""A real ``jupyter server`` / ``jupyter lab`` subprocess with the nbmcp extension, for tests and benchmarks."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

# The extension is enabled explicitly (and the bare package name off) so that the server loads it
# exactly once whether or not the installed etc/jupyter config enables it.
EXTENSIONS = repr({"nbmcp": False, "nbmcp.jupyter": True})  # a Python literal, as traitlets parses it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterProcess:
    """A running Jupyter Server: its URL (with base_url), token, root dir and runtime dir."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, token: str, root: Path, runtime: Path, log: Path):
        self.proc = proc
        self.url = url  # ends with "/"
        self.token = token
        self.root = root
        self.runtime = runtime
        self.log = log
        self.headers = {"Authorization": f"token {token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=self.headers, timeout=30, trust_env=False, **kwargs)

    def start_notebook_kernel(self, path: str) -> str:
        """Open ``path`` as a notebook session (as JupyterLab does); returns its kernel id."""
        body = {"path": path, "type": "notebook", "name": os.path.basename(path), "kernel": {"name": "python3"}}
        response = self.api("POST", "api/sessions", json=body)
        response.raise_for_status()
        return response.json()["kernel"]["id"]

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextmanager
def jupyter_server(
    *,
    app: str = "server",
    base_url: str = "/",
    root: Path | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 90,
) -> Iterator[JupyterProcess]:
    """Start ``jupyter <app>`` on a free loopback port with a token; stop it (and its kernels) afterwards."""
    port = free_port()
    token = secrets.token_hex(24)
    with tempfile.TemporaryDirectory(prefix="nbmcp-jupyter-test-") as tmp:
        tmp_path = Path(tmp)
        root = root or tmp_path / "root"
        root.mkdir(parents=True, exist_ok=True)
        runtime = tmp_path / "runtime"
        runtime.mkdir()
        log = tmp_path / "server.log"
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "PYTHONUNBUFFERED": "1",
            "JUPYTER_PLATFORM_DIRS": "1",
        }
        env.pop("JUPYTER_TOKEN", None)
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if app == "lab" else "jupyter_server",
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={base_url}",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.jpserver_extensions={EXTENSIONS}",
            "--ServerApp.reraise_server_extension_failures=True",
            *(extra_args or []),
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        server = JupyterProcess(proc, f"http://127.0.0.1:{port}{base_url}", token, root, runtime, log)
        try:
            _wait_until_up(server, timeout)
            yield server
        finally:
            _stop(server)


def _wait_until_up(server: JupyterProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"jupyter exited with {server.proc.returncode}:\n{server.log_text()}")
        try:
            # 406 (no SSE Accept header) from the SDK app: the extension and its MCP app are up.
            if server.api("GET", "nbmcp/mcp").status_code not in (404, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"jupyter did not start within {timeout} s:\n{server.log_text()}")


def _stop(server: JupyterProcess) -> None:
    if server.proc.poll() is None:
        # The REST shutdown lets the server shut its kernels down; SIGTERM is the fallback.
        with suppress(httpx.HTTPError):
            server.api("POST", "api/shutdown")
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} not met within {timeout} s")
