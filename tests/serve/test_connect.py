"""Finding kernels: connection files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbmcp.exceptions import KernelSessionError
from nbmcp.serve.connect import newest_connection_file
from nbmcp.serve.session import KernelSession

pytestmark = pytest.mark.anyio


async def test_attach_without_connection_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(KernelSessionError, match="no kernel connection file"):
        await KernelSession.attach("/nonexistent/kernel-nope.json")


def test_newest_connection_file_is_the_most_recently_modified(tmp_path: Path) -> None:
    with pytest.raises(KernelSessionError, match="no kernel connection file"):
        newest_connection_file(str(tmp_path))
    for age, name in enumerate(["kernel-new.json", "kernel-old.json"]):
        path = tmp_path / name
        path.write_text("{}")
        os.utime(path, (1_000_000 - age * 1000, 1_000_000 - age * 1000))
    (tmp_path / "other.json").write_text("{}")
    assert newest_connection_file(str(tmp_path)) == str(tmp_path / "kernel-new.json")
