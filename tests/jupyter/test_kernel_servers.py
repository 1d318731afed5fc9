"""The kernel proxy's lookup of in-kernel servers: connection files written by nbmcp.discovery, read again only
when replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbmcp.discovery import connection_file_path, remove_connection_file, write_connection_file
from nbmcp.jupyter.kernel_servers import KernelServers


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def info(token: str) -> dict[str, str]:
    return {"url": "http://127.0.0.1:40001/mcp", "token": token, "kernel_id": "k1"}


def test_a_kernel_without_a_connection_file_has_no_server() -> None:
    assert KernelServers().lookup("k1") is None


def test_an_unchanged_file_is_not_read_again() -> None:
    servers = KernelServers()
    path = write_connection_file("k1", info("a" * 43))
    first = servers.lookup("k1")
    assert first == info("a" * 43)
    # Same inode, size and modification time: the copy held is used, the file is not opened.
    before = os.stat(path)
    path.write_text(path.read_text().replace("a" * 43, "b" * 43))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert servers.lookup("k1") is first


def test_a_replaced_file_is_read_again() -> None:
    servers = KernelServers()
    write_connection_file("k1", info("a" * 43))
    assert servers.lookup("k1") == info("a" * 43)
    write_connection_file("k1", info("b" * 43))  # a rotated token: same size, replaced atomically
    assert servers.lookup("k1") == info("b" * 43)
    remove_connection_file(connection_file_path("k1"))
    assert servers.lookup("k1") is None


def test_an_unreadable_file_is_no_server() -> None:
    servers = KernelServers()
    connection_file_path("k1").write_text("{not json")
    assert servers.lookup("k1") is None
    connection_file_path("k1").write_text("{}")
    assert servers.lookup("k1") is None


def test_gone_kernels_are_forgotten() -> None:
    servers = KernelServers()
    write_connection_file("k1", info("a" * 43))
    write_connection_file("k2", info("b" * 43))
    first = servers.lookup("k1")
    servers.lookup("k2")
    servers.forget({"k2"})
    assert servers.lookup("k1") == first and servers.lookup("k1") is not first  # read afresh
