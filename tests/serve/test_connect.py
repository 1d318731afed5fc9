"""Finding kernels: connection files, and which of them still has a kernel behind it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from nbmcp.exceptions import KernelSessionError
from nbmcp.serve.kernel.connect import newest_connection_file, newest_live_connection_file
from nbmcp.serve.kernel.session import KernelSession
from tests.conftest import KernelHandle

pytestmark = pytest.mark.anyio


async def test_attach_without_connection_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(KernelSessionError, match="no kernel connection file"):
        await KernelSession.attach("/nonexistent/kernel-nope.json")


def start_kernel_in(runtime: Path, name: str) -> KernelHandle:
    km = KernelManager(kernel_name="python3", connection_file=str(runtime / f"kernel-{name}.json"))
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    try:
        return KernelHandle(km)
    except BaseException:
        km.shutdown_kernel(now=True)
        raise


def leave_dead_kernel_file(runtime: Path, name: str, age: float = 0.0) -> Path:
    """What a crashed kernel leaves behind: its connection file, with nothing listening on its ports."""
    handle = start_kernel_in(runtime, name)
    path = Path(handle.km.connection_file)
    info = json.loads(path.read_text())
    handle.shutdown()  # removes the file, as a clean exit does; a crash would not
    path.write_text(json.dumps(info))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture(scope="module")
def runtime_with_a_live_and_a_dead_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    runtime = tmp_path_factory.mktemp("runtime")
    live = start_kernel_in(runtime, "live")
    try:
        live_path = Path(live.km.connection_file)
        stamp = time.time() - 60
        os.utime(live_path, (stamp, stamp))  # older than the dead one
        dead = leave_dead_kernel_file(runtime, "dead")
        yield {"runtime": runtime, "live": str(live_path), "dead": str(dead), "handle": live}
    finally:
        live.shutdown()


@pytest.mark.timeout(60)
def test_the_newest_file_whose_kernel_answers_wins_quickly(runtime_with_a_live_and_a_dead_kernel: dict) -> None:
    setup = runtime_with_a_live_and_a_dead_kernel
    assert os.path.getmtime(setup["dead"]) > os.path.getmtime(setup["live"])
    started = time.monotonic()
    chosen, skipped = newest_live_connection_file(str(setup["runtime"]))
    assert time.monotonic() - started < 2
    assert (chosen, skipped) == (setup["live"], 1)
    assert newest_connection_file(str(setup["runtime"])) == setup["live"]


@pytest.mark.timeout(30)
def test_a_busy_kernel_still_answers_its_heartbeat(runtime_with_a_live_and_a_dead_kernel: dict) -> None:
    setup = runtime_with_a_live_and_a_dead_kernel
    handle: KernelHandle = setup["handle"]
    cell = handle.start_cell("import time; time.sleep(3)")
    try:
        assert newest_connection_file(str(setup["runtime"])) == setup["live"]
    finally:
        handle.wait_idle(cell)


def test_no_file_or_only_dead_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KernelSessionError, match=r"no kernel connection file .* start a kernel"):
        newest_connection_file(str(tmp_path))
    (tmp_path / "kernel-garbage.json").write_text("{not json")
    (tmp_path / "kernel-empty.json").write_text("{}")
    started = time.monotonic()
    with pytest.raises(KernelSessionError, match=r"skipped all 2 .* --existing CONNECTION_FILE"):
        newest_connection_file(str(tmp_path), probe_timeout=0.5)
    assert time.monotonic() - started < 2


@pytest.mark.timeout(30)
async def test_attaching_to_a_dead_kernels_file_names_the_file(runtime_with_a_live_and_a_dead_kernel: dict) -> None:
    dead = runtime_with_a_live_and_a_dead_kernel["dead"]
    with pytest.raises(KernelSessionError) as failed:
        await KernelSession.attach(dead, ready_timeout=1)
    message = str(failed.value)
    assert dead in message and "did not answer within 1 s" in message and "--existing" in message
