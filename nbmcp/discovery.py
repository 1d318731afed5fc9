"""Connection files: how ``nbmcp bridge``, ``nbmcp list`` and the Jupyter Server extension find in-kernel servers.

One JSON file per running server, ``nbmcp-<kernel id or pid>.json`` in the Jupyter runtime dir, mode 0600
because it holds the token.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "connection_file_path",
    "find_server",
    "list_servers",
    "remove_connection_file",
    "write_connection_file",
]

PREFIX = "nbmcp-"


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def connection_file_path(server_id: str) -> Path:
    return runtime_dir() / f"{PREFIX}{server_id}.json"


def write_connection_file(server_id: str, info: dict[str, Any]) -> Path:
    """Write ``info`` atomically, readable by the owner only (it holds the token)."""
    path = connection_file_path(server_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_connection_file(path: str | Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().split(") ", 1)[-1][:1] != "Z"
    except OSError:
        return True


def list_servers(*, include_stale: bool = False) -> list[dict[str, Any]]:
    """Running in-kernel servers, newest first. Files whose process is gone are skipped (and removed)."""
    try:
        candidates = list(runtime_dir().glob(f"{PREFIX}*.json"))
    except OSError:
        return []
    servers = []
    for path in candidates:
        try:
            info = json.loads(path.read_text())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        pid = info.get("pid")
        if not include_stale and isinstance(pid, int) and not pid_alive(pid):
            remove_connection_file(path)
            continue
        info["connection_file"] = str(path)
        info["_mtime"] = mtime
        servers.append(info)
    servers.sort(key=lambda s: s.pop("_mtime"), reverse=True)
    return servers


def find_server(kernel_id: str | None = None) -> dict[str, Any]:
    """The server of ``kernel_id`` (a prefix is enough), or the newest one. A ``LookupError`` says which
    servers do run (or that none does) and how to start one."""
    servers = list_servers()
    start = "run `%load_ext nbmcp` in the notebook of the kernel you want to reach"
    if kernel_id is None:
        if not servers:
            raise LookupError(f"no running nbmcp server found in {runtime_dir()}: {start}")
        return servers[0]
    in_kernels = [s for s in servers if s.get("kernel_id")]
    matches = [s for s in in_kernels if str(s["kernel_id"]).startswith(kernel_id)]
    if matches:
        return matches[0]
    if not in_kernels:
        raise LookupError(f"no nbmcp server for kernel {kernel_id!r}: none is running in any kernel; {start}")
    known = ", ".join(str(s["kernel_id"])[:8] for s in in_kernels)
    raise LookupError(
        f"no nbmcp server for kernel {kernel_id!r}; servers run in kernels {known} (`nbmcp list` shows them); "
        f"for another kernel, {start}"
    )
