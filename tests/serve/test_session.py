"""KernelSession against real kernels: started, attached by connection file; execute, streams, timeout,
cancellation, subshell inspection, display updates, death and restart."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from nbmcp.exceptions import KernelDeadError, KernelSessionError
from nbmcp.serve.session import KernelSession

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def ks() -> AsyncIterator[KernelSession]:
    session = await KernelSession.start()
    try:
        yield session
    finally:
        await session.shutdown()


def _texts(outputs: list[dict]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


async def test_execute_returns_nbformat_outputs(ks: KernelSession) -> None:
    outcome = await ks.execute("1+1")
    assert outcome.status == "ok"
    assert outcome.outputs == [
        {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "2"}, "execution_count": 1}
    ]
    assert outcome.execution_count == 1
    assert ks.describe()["mode"] == "started" and ks.describe()["pid"] == ks.pid


async def test_started_kernel_has_no_output_cache(ks: KernelSession) -> None:
    outcome = await ks.execute("'_1' in globals(), len(Out)")
    assert outcome.outputs[0]["data"]["text/plain"] == "(False, 0)"


async def test_streams_arrive_while_running(ks: KernelSession) -> None:
    seen: list[tuple[float, str]] = []

    def on_output(name: str, text: str) -> None:
        seen.append((time.monotonic(), text))

    outcome = await ks.execute(
        "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)", on_output=on_output
    )
    end = time.monotonic()
    assert _texts(outcome.outputs) == "0\n1\n2\n"
    # ipykernel may flush a print's text and its newline separately: compare the text, count the pieces.
    assert "".join(t for _, t in seen) == "0\n1\n2\n" and len(seen) >= 3
    assert end - seen[0][0] > 0.3  # the first line came while the cell still ran


async def test_error_status_and_state_kept(ks: KernelSession) -> None:
    outcome = await ks.execute("kept = 41\n1/0")
    assert outcome.status == "error"
    assert outcome.error is not None and outcome.error["ename"] == "ZeroDivisionError"
    assert outcome.outputs[-1]["output_type"] == "error"
    again = await ks.execute("kept + 1")
    assert again.outputs[0]["data"]["text/plain"] == "42"


@pytest.mark.timeout(30)
async def test_timeout_interrupts_and_keeps_state(ks: KernelSession) -> None:
    started = time.monotonic()
    outcome = await ks.execute("before = 'yes'\nprint('partial', flush=True)\nimport time; time.sleep(60)", timeout=1)
    took = time.monotonic() - started
    assert outcome.status == "timeout" and outcome.timed_out
    assert "interrupted" in (outcome.message or "")
    assert _texts(outcome.outputs).startswith("partial")
    assert took < 2.0, f"kernel idle {took - 1:.2f} s after the deadline"
    assert (await ks.execute("before")).outputs[0]["data"]["text/plain"] == "'yes'"


@pytest.mark.timeout(30)
async def test_cancelled_execute_interrupts_the_kernel(ks: KernelSession) -> None:
    running = asyncio.Event()
    code = "flag = 'started'\nprint('running', flush=True)\nimport time; time.sleep(60)\nflag = 'finished'"
    task = asyncio.create_task(ks.execute(code, on_output=lambda name, text: running.set()))
    await asyncio.wait_for(running.wait(), 10)  # the cell is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    outcome = await ks.execute("flag", timeout=10)
    assert time.monotonic() - started < 3
    assert outcome.outputs[0]["data"]["text/plain"] == "'started'"
    assert ks.last_outcome is not None


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


async def test_display_updates_and_clear_output(ks: KernelSession) -> None:
    code = (
        "from IPython.display import display, clear_output\n"
        "h = display('first', display_id=True)\n"
        "h.update('second')\n"
        "print('gone')\nclear_output(wait=True)\nprint('kept')"
    )
    outcome = await ks.execute(code)
    # clear_output(wait=True) clears at the next output: only 'kept' remains
    assert [o["output_type"] for o in outcome.outputs] == ["stream"]
    assert _texts(outcome.outputs) == "kept\n"
    outcome = await ks.execute("h2 = display('a', display_id=True)\nh2.update('b')")
    assert outcome.outputs[0]["data"]["text/plain"] == "'b'"


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


async def test_attach_without_connection_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(KernelSessionError, match="no kernel connection file"):
        await KernelSession.attach("/nonexistent/kernel-nope.json")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[-1][:1] != "Z"


@pytest.mark.timeout(30)
async def test_inspection_falls_back_without_subshells(ks: KernelSession) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from nbmcp.serve.tools import run_probe

    await ks.execute("fallback_var = {'k': 1}")
    features = ks.kernel_info.get("supported_features")
    ks.kernel_info["supported_features"] = []  # a kernel without subshells (ipykernel < 7)
    try:
        idle = await run_probe(ks, "list_variables(50)")  # idle kernel: the main shell answers
        assert "fallback_var" in {v["name"] for v in idle["variables"]}
        running = asyncio.Event()
        busy = asyncio.create_task(
            ks.execute(
                "print('running', flush=True)\nimport time; time.sleep(1.5)", on_output=lambda n, t: running.set()
            )
        )
        await asyncio.wait_for(running.wait(), 10)
        with pytest.raises(ToolError, match="busy running a cell and has no subshells"):
            await run_probe(ks, "list_variables(50)")
        await busy
    finally:
        ks.kernel_info["supported_features"] = features
