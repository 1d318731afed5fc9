"""Shared fixtures: real kernels through jupyter_client, and SDK clients with the bearer token."""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client import KernelManager


@dataclass
class CellResult:
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)

    def raise_for_error(self) -> CellResult:
        if self.error:
            raise AssertionError(f"cell failed: {self.error}\n{self.stderr}")
        return self


class KernelHandle:
    """A real ipykernel started through jupyter_client, with helpers to run cells."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @property
    def kernel_id(self) -> str:
        return os.path.basename(self.km.connection_file).removesuffix(".json").removeprefix("kernel-")

    def run(self, code: str, timeout: float = 60) -> CellResult:
        """Run a cell and collect its outputs (raises on kernel timeout)."""
        result = CellResult()

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind == "execute_result":
                result.result = content["data"].get("text/plain")
            elif kind == "display_data":
                result.displays.append(content["data"])
            elif kind == "error":
                result.error = f"{content['ename']}: {content['evalue']}"

        self.kc.execute_interactive(code, output_hook=hook, timeout=timeout, store_history=True)
        return result

    def value(self, expression: str) -> Any:
        """The JSON value of an expression evaluated in the kernel."""
        out = self.run(f"import json as _j; print(_j.dumps({expression}))").raise_for_error()
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_cell(self, code: str) -> str:
        """Send a cell without waiting for it (e.g. a long-running one)."""
        return self.kc.execute(code)

    def wait_idle(self, msg_id: str, timeout: float = 60) -> str:
        """Wait for a cell sent with start_cell to finish; returns what it printed to stdout."""
        deadline = time.monotonic() + timeout
        stdout = ""
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                stdout += msg["content"]["text"] if msg["content"]["name"] == "stdout" else ""
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                # Drain the shell reply so the next execute_interactive sees its own.
                self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
                return stdout
        raise TimeoutError(f"cell {msg_id} did not finish within {timeout} s")

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def start_kernel(env: dict[str, str] | None = None, attempts: int = 3) -> KernelHandle:
    """A ready kernel. jupyter_client picks free ports before the kernel binds them, so another process starting
    at the same moment can take one ("Address already in use": the kernel dies before kernel_info); then a new
    kernel with new ports is started (seen with test rounds side by side, stress/flaky.py -j 2)."""
    for attempt in range(attempts):
        km = KernelManager(kernel_name="python3")
        km.start_kernel(
            extra_arguments=["--HistoryManager.enabled=False"],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        try:
            return KernelHandle(km)
        except RuntimeError as exc:
            km.shutdown_kernel(now=True)
            if attempt == attempts - 1 or "died before replying" not in str(exc):
                raise
        except BaseException:
            km.shutdown_kernel(now=True)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelHandle]:
    handle = start_kernel()
    try:
        yield handle
    finally:
        handle.shutdown()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def connect(url: str, token: str | None, mode: str = "auto", **options: Any) -> Any:
    """An SDK client for an nbmcp HTTP server, sending the bearer token."""
    from nbmcp.client import connect as nbmcp_connect

    return nbmcp_connect(url, token, mode=mode, **options)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PYTHON = sys.executable


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the whole test session (it takes 10-20 s to start); tests using it are
    marked ``spark``. Skipped only where Spark cannot run: no pyspark or no Java."""
    import shutil

    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17: apt-get install openjdk-17-jre-headless")
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # Spark's driver listens on loopback only
    session = (
        SparkSession.builder.master("local[1]")
        .appName("nbmcp-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
