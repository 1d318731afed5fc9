"""Reaching a kernel: start one, find one by connection file, or use one behind a Jupyter Server.

These are the steps before any message flows; :class:`~nbmcp.serve.session.KernelSession` composes them
into its ``start`` / ``attach`` / ``remote`` constructors. A Jupyter Server is reached through its REST
API (:class:`JupyterServerAPI`: JupyterHub single-user servers, Kernel and Enterprise Gateway too) and
its kernel WebSocket (:class:`~nbmcp.serve.channels.WebSocketChannels`).
"""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import Any

from ..exceptions import KernelSessionError

__all__ = [
    "JupyterServerAPI",
    "attached_client",
    "launch_kernel",
    "newest_connection_file",
    "process_of",
]


def newest_connection_file(runtime_dir: str | None = None) -> str:
    """The most recently modified ``kernel-*.json`` in the Jupyter runtime dir."""
    from jupyter_core.paths import jupyter_runtime_dir

    where = runtime_dir or jupyter_runtime_dir()
    files = glob.glob(os.path.join(where, "kernel-*.json"))
    if not files:
        raise KernelSessionError(f"no kernel connection file (kernel-*.json) in {where}")
    return max(files, key=os.path.getmtime)


async def launch_kernel(kernel_name: str, *, cwd: str | Path | None, extra_arguments: list[str] | None) -> Any:
    """Start a kernel process; its ``AsyncKernelManager``."""
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    with contextlib.suppress(Exception):  # CurveZMQ keys when the kernelspec and libzmq support them
        km.transport_encryption = "auto"
    args = list(extra_arguments or [])
    if _is_ipykernel(km):
        # no Out[] cache: results are not kept alive in the kernel, no `_1` variables appear;
        # history in memory: the shared ~/.ipython history.sqlite is not locked by (or filled with)
        # the assistant's cells -- its lock made a fresh kernel's first cell wait ~1 s here
        args += ["--InteractiveShell.cache_size=0", "--HistoryManager.hist_file=:memory:"]
    try:
        await km.start_kernel(extra_arguments=args, cwd=str(cwd or os.getcwd()))
    except Exception as exc:
        raise KernelSessionError(f"could not start kernel {kernel_name!r}: {exc}") from exc
    return km


def process_of(manager: Any) -> Any:
    """The ``Popen`` of a kernel a manager started (None when its provisioner has no local process)."""
    return getattr(getattr(manager, "provisioner", None), "process", None)


def attached_client(connection_file: str | Path | None) -> tuple[Any, str]:
    """An ``AsyncKernelClient`` for a running kernel and the path of its connection file (default: the
    newest in the runtime dir)."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.connect import find_connection_file

    if connection_file is None:
        path = newest_connection_file()
    else:
        try:
            path = find_connection_file(str(connection_file))
        except OSError as exc:
            raise KernelSessionError(f"no kernel connection file {str(connection_file)!r}") from exc
    client = AsyncKernelClient(connection_file=path)
    try:
        client.load_connection_file()
    except Exception as exc:
        raise KernelSessionError(f"cannot read connection file {path}: {exc}") from exc
    return client, path


class JupyterServerAPI:
    """The kernels REST API of a Jupyter Server; every failure is a :class:`KernelSessionError` that says
    what to check."""

    def __init__(self, server_url: str, token: str | None) -> None:
        import httpx

        self.base = server_url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=30.0)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KernelSessionError(f"Jupyter Server {self.base} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise KernelSessionError(
                f"Jupyter Server {self.base} answered {response.status_code} to {method} /{path}"
                + (" (check --server-token)" if response.status_code in (401, 403) else "")
            )
        return response

    async def newest_kernel_id(self) -> str:
        """The most recently active kernel."""
        kernels = (await self.request("GET", "api/kernels")).json()
        if not kernels:
            raise KernelSessionError(f"no running kernels on {self.base}")
        kernels.sort(key=lambda k: k.get("last_activity") or "")
        return kernels[-1]["id"]

    async def start_kernel(self, kernel_name: str) -> dict[str, Any]:
        return (await self.request("POST", "api/kernels", json={"name": kernel_name})).json()

    async def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"api/kernels/{kernel_id}")).json()

    async def interrupt(self, kernel_id: str) -> None:
        await self.request("POST", f"api/kernels/{kernel_id}/interrupt", json={})

    async def restart(self, kernel_id: str, timeout: float) -> None:
        await self.request("POST", f"api/kernels/{kernel_id}/restart", json={}, timeout=timeout)

    async def delete(self, kernel_id: str) -> None:
        await self._http.delete(f"api/kernels/{kernel_id}")

    def channels_url(self, kernel_id: str) -> str:
        ws_base = "ws" + self.base[len("http") :] if self.base.startswith("http") else self.base
        return f"{ws_base}api/kernels/{kernel_id}/channels"

    async def aclose(self) -> None:
        await self._http.aclose()


def _is_ipykernel(km: Any) -> bool:
    try:
        spec = km.kernel_spec
    except Exception:
        return False
    argv = " ".join(getattr(spec, "argv", []) or [])
    return getattr(spec, "language", "").lower() == "python" and "ipykernel" in argv
