"""KernelSession against real kernels: subshells, death and restart, attaching by connection file (also to
a kernel busy with the human's cell)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import anyio
import pytest

from nbmcp.discovery import pid_alive
from nbmcp.exceptions import KernelDeadError, KernelSessionError
from nbmcp.serve.kernel.session import KernelSession

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(30)
async def test_subshell_answers_while_a_cell_runs(ks: KernelSession) -> None:
    assert ks.supports_subshells  # ipykernel 7
    await ks.execute("probe_me = 7")
    running = asyncio.Event()
    busy = asyncio.create_task(
        ks.execute("print('running', flush=True)\nimport time; time.sleep(2)", on_output=lambda n, t: running.set())
    )
    await asyncio.wait_for(running.wait(), 10)
    assert ks.busy
    started = time.monotonic()
    outcome = await ks.execute(
        "", silent=True, store_history=False, user_expressions={"v": "probe_me * 6"}, subshell=True, timeout=5
    )
    took = time.monotonic() - started
    assert outcome.user_expressions["v"]["data"]["text/plain"] == "42"
    assert took < 1.0 and not busy.done()
    await busy


@pytest.mark.timeout(60)
async def test_dead_kernel_reported_fast_and_restart_recovers() -> None:
    session = await KernelSession.start()
    try:
        pid = session.pid
        started = time.monotonic()
        outcome = await session.execute("import os; os._exit(1)")
        assert outcome.status == "dead"
        assert time.monotonic() - started < 1.5
        assert "died" in (outcome.message or "") and "restart()" in (outcome.message or "")
        assert not await session.is_alive()
        with pytest.raises(KernelDeadError, match="died"):
            await session.execute("1")
        await session.restart()
        assert session.pid != pid
        assert (await session.execute("6*7")).outputs[0]["data"]["text/plain"] == "42"
    finally:
        await session.shutdown()
    assert not _alive(session.pid)


@pytest.mark.timeout(60)
async def test_attach_by_connection_file_never_shuts_the_kernel_down() -> None:
    from tests.conftest import start_kernel

    handle = start_kernel()
    try:
        handle.run("shared_value = 'from the human'").raise_for_error()
        session = await KernelSession.attach(handle.km.connection_file)
        assert session.kind == "attached" and not session.owned
        assert session.pid == handle.km.provisioner.process.pid  # learnt from the kernel: same host
        outcome = await session.execute("shared_value")
        assert outcome.outputs[0]["data"]["text/plain"] == "'from the human'"
        timed = await session.execute("import time; time.sleep(30)", timeout=0.5)  # interrupt_request
        assert timed.status == "timeout" and timed.duration < 2
        with pytest.raises(KernelSessionError, match="attached"):
            await session.restart()
        await session.shutdown()
        assert handle.km.is_alive()
        assert handle.run("1+1").result == "2"
    finally:
        handle.shutdown()


@pytest.mark.timeout(60)
async def test_attach_to_a_kernel_busy_with_the_humans_long_cell() -> None:
    from tests.conftest import start_kernel

    handle = start_kernel()
    try:
        handle.run("prepared = [1, 2, 3]").raise_for_error()
        msg_id = handle.start_cell("import time\ntime.sleep(4)\nprint('human cell done')")  # the human's cell
        started = time.monotonic()
        session = await KernelSession.attach(handle.km.connection_file, ready_timeout=10)
        assert time.monotonic() - started < 3  # ready through the control channel, not after the cell
        inspected = await session.execute(
            "", silent=True, store_history=False, user_expressions={"n": "len(prepared)"}, subshell=True, timeout=5
        )
        assert inspected.user_expressions["n"]["data"]["text/plain"] == "3"
        # Our code times out while the human's cell still runs: theirs must not be interrupted.
        queued = await session.execute("after = 'ran later'", timeout=0.5)
        assert queued.status == "timeout" and "not interrupted" in (queued.message or "")
        assert handle.wait_idle(msg_id, timeout=30) == "human cell done\n"
        await session.shutdown()
    finally:
        handle.shutdown()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[-1][:1] != "Z"


@pytest.mark.timeout(60)
async def test_a_start_cancelled_by_a_cancel_scope_leaves_no_kernel_behind() -> None:
    """A cancel scope (the SDK's, an anyio caller's) cancels every await in it, the clean-up's too: the kernel a
    cancelled start launched must be shut down all the same, not left running."""
    session = await KernelSession.launch()
    pid = session.pid
    assert pid is not None and pid_alive(pid)
    try:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await session.connect()
        assert scope.cancelled_caught
        assert not pid_alive(pid)
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
