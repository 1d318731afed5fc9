"""Where each kernel's in-kernel nbmcp server listens: its connection file, read again only when it changes.

The kernel proxy looks this up on every request (one MCP message each). Opening, reading and parsing the
file costs several times a ``stat``; the file is replaced atomically whenever it changes (a new port, a
rotated token), so its inode, size and modification time say when the copy held here is stale.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["KernelServers"]


class KernelServers:
    """``lookup(kernel_id)``: the kernel's nbmcp connection info (url, token, ...), or None if it has none."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}
        self._cached: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def lookup(self, kernel_id: str) -> dict[str, Any] | None:
        path = self._paths.get(kernel_id)
        if path is None:
            from ..discovery import connection_file_path

            path = self._paths[kernel_id] = connection_file_path(kernel_id)
        try:
            st = os.stat(path)
        except OSError:
            self._cached.pop(kernel_id, None)
            return None
        version = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cached.get(kernel_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            self._cached.pop(kernel_id, None)
            return None
        if not isinstance(info, dict) or not info:
            return None
        self._cached[kernel_id] = (version, info)
        return info

    def forget(self, keep: set[str]) -> None:
        """Drop what is held for kernels not in ``keep`` (kernels that have gone)."""
        for kernel_id in [k for k in self._paths if k not in keep]:
            self._paths.pop(kernel_id, None)
            self._cached.pop(kernel_id, None)
