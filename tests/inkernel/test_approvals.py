"""Approvals end to end: a real kernel, ``%load_ext nbmcp``, an SDK client calling tools that need approval.

The owner's side is driven in the kernel through the panel's Python API (what its buttons call) and, once,
through the Jupyter comm protocol exactly as a frontend sends a button click.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import eventually, start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    return start_server(
        kernel,
        """
import nbmcp.inkernel.oversight.approvals, nbmcp.inkernel.oversight.panel
runs = []

@nbmcp.tool(requires_approval=True)
def drop_table(name: str, cascade: bool = False) -> str:
    '''Drop a table (asks the notebook's owner first).'''
    runs.append(name)
    return f"dropped {name}"
""",
    )


def open_panel(kernel: KernelHandle) -> None:
    kernel.run("_panel = nbmcp.panel()").raise_for_error()
    assert kernel.value("_panel.is_open")


def close_panels(kernel: KernelHandle) -> None:
    kernel.run(
        "while nbmcp.inkernel.oversight.panel.current_panel() is not None:\n    "
        "nbmcp.inkernel.oversight.panel.current_panel().close()"
    ).raise_for_error()


async def wait_pending(kernel: KernelHandle, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
    """Poll the kernel (without blocking the client's event loop) until ``count`` calls wait for approval."""
    with anyio.fail_after(timeout):
        while True:
            pending = await anyio.to_thread.run_sync(
                kernel.value, "nbmcp.inkernel.oversight.approvals.pending_approvals()"
            )
            if len(pending) >= count:
                return pending
            await anyio.sleep(0.05)


async def in_kernel(kernel: KernelHandle, code: str) -> Any:
    return (await anyio.to_thread.run_sync(kernel.run, code)).raise_for_error()


def test_the_broker_needs_no_widgets() -> None:
    """Approvals are plain Python: deciding a call (from code, a test, another frontend) loads no ipywidgets."""
    code = (
        "import sys, nbmcp.inkernel.oversight.approvals as a; a.pending_approvals(); print('ipywidgets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("mode", MODES)
async def test_without_a_panel_the_call_is_denied_at_once(server: dict, kernel: KernelHandle, mode: str) -> None:
    close_panels(kernel)
    async with connect(server["url"], server["token"], mode=mode) as client:
        started = time.perf_counter()
        result = await client.call_tool("drop_table", {"name": "sales"})
        elapsed = time.perf_counter() - started
    assert result.is_error
    text = text_of(result)
    assert "needs the notebook owner's approval" in text and "%mcp panel" in text, text
    assert elapsed < 2, f"a call with nobody to ask must not wait ({elapsed:.2f} s)"
    assert kernel.value("runs") == []
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.snapshot().calls[-1].outcome") == "denied"


async def test_a_tool_error_that_mentions_approval_is_an_error_not_a_denial(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        "@nbmcp.tool\ndef strict() -> str:\n    raise PermissionError('approval declined by the bank')"
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        assert (await client.call_tool("strict", {})).is_error
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.snapshot().calls[-1].outcome") == "error"


@pytest.mark.parametrize("mode", MODES)
async def test_approve_runs_the_call(server: dict, kernel: KernelHandle, mode: str) -> None:
    open_panel(kernel)
    kernel.run("runs.clear()").raise_for_error()
    results: list[Any] = []
    async with connect(server["url"], server["token"], mode=mode) as client:

        async def call() -> None:
            results.append(await client.call_tool("drop_table", {"name": "sales", "cascade": True}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            (pending,) = await wait_pending(kernel)
            assert pending["tool"] == "drop_table"
            assert pending["arguments"] == {"name": "sales", "cascade": True}
            assert pending["client"]  # the client's clientInfo name
            assert kernel.value("runs") == []  # nothing ran before the owner said yes
            # The panel (redrawn by its own thread) shows the request, its arguments and the two buttons.
            shown = await eventually(
                kernel,
                "[[a.text, a.approve.label, a.deny.label]"
                " for a in nbmcp.inkernel.oversight.panel.current_panel().shown.approvals.values()]",
                lambda rows: len(rows) == 1,
            )
            assert len(shown) == 1 and "drop_table" in shown[0][0] and "sales" in shown[0][0]
            assert shown[0][1:] == ["Approve", "Deny"]
            assert (await in_kernel(kernel, "_panel.approve()")).result == repr(pending["id"])
    (result,) = results
    assert not result.is_error, text_of(result)
    assert text_of(result) == "dropped sales"
    assert kernel.value("runs") == ["sales"]
    assert kernel.value("nbmcp.inkernel.oversight.approvals.pending_approvals()") == []
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.snapshot().calls[-1].outcome") == "ok"


@pytest.mark.parametrize("mode", MODES)
async def test_deny_returns_a_declined_error(server: dict, kernel: KernelHandle, mode: str) -> None:
    open_panel(kernel)
    kernel.run("runs.clear()").raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def call() -> None:
            results.append(await client.call_tool("drop_table", {"name": "customers"}))

        tg.start_soon(call)
        await wait_pending(kernel)
        await in_kernel(kernel, "_panel.deny()")
    (result,) = results
    assert result.is_error
    assert "declined" in text_of(result) and "drop_table" in text_of(result)
    assert kernel.value("runs") == []
    log = kernel.run("%mcp log 1").raise_for_error().stdout
    assert "drop_table" in log and "denied" in log


async def test_no_answer_times_out_and_denies(server: dict, kernel: KernelHandle) -> None:
    open_panel(kernel)
    kernel.run("runs.clear(); _panel.approval_timeout = 1").raise_for_error()
    try:
        async with connect(server["url"], server["token"]) as client:
            started = time.perf_counter()
            result = await client.call_tool("drop_table", {"name": "orders"})
            elapsed = time.perf_counter() - started
    finally:
        kernel.run("_panel.approval_timeout = 120").raise_for_error()
    assert result.is_error
    assert "did not answer within 1 s" in text_of(result) and "declined" in text_of(result)
    assert 0.9 < elapsed < 10
    assert kernel.value("runs") == []
    assert kernel.value("nbmcp.inkernel.oversight.approvals.pending_approvals()") == []
    with pytest.raises(AssertionError, match="LookupError"):  # nothing left to approve
        kernel.run("_panel.approve()").raise_for_error()


async def test_a_button_click_from_the_frontend_approves(server: dict, kernel: KernelHandle) -> None:
    """The Approve button's comm receives exactly what JupyterLab sends on a click."""
    open_panel(kernel)
    kernel.run("runs.clear()").raise_for_error()
    async with connect(server["url"], server["token"]) as client, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def call() -> None:
            results.append(await client.call_tool("drop_table", {"name": "by_click"}))

        tg.start_soon(call)
        (pending,) = await wait_pending(kernel)
        button = await anyio.to_thread.run_sync(
            kernel.value,
            f"nbmcp.inkernel.oversight.panel.current_panel().shown.approvals[{pending['id']!r}].approve.model_id",
        )
        message = kernel.kc.session.msg(
            "comm_msg", {"comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}}
        )
        kernel.kc.shell_channel.send(message)
    (result,) = results
    assert text_of(result) == "dropped by_click"
    assert kernel.value("runs") == ["by_click"]


async def test_policy_all_and_none(server: dict, kernel: KernelHandle) -> None:
    close_panels(kernel)
    kernel.run("runs.clear()").raise_for_error()
    try:
        out = kernel.run("%mcp approve all").raise_for_error()
        assert "'all'" in out.stdout
        async with connect(server["url"], server["token"]) as client:
            result = await client.call_tool("drop_table", {"name": "t1"})
            assert text_of(result) == "dropped t1"  # no panel needed, nobody asked
            kernel.run("%mcp approve none").raise_for_error()
            open_panel(kernel)  # even with a panel to ask, policy none refuses at once
            started = time.perf_counter()
            result = await client.call_tool("drop_table", {"name": "t2"})
            assert time.perf_counter() - started < 2
        assert result.is_error and "approval policy: none" in text_of(result)
        assert kernel.value("runs") == ["t1"]
        status = kernel.run("%mcp approve").raise_for_error().stdout
        assert "'none'" in status and "timeout 120 s" in status
    finally:
        kernel.run("%mcp approve ask").raise_for_error()
    assert kernel.value("_panel.approval_policy") == "ask"


async def test_execute_asks_the_owner_too(server: dict, kernel: KernelHandle) -> None:
    open_panel(kernel)
    kernel.run("%mcp mode execute").raise_for_error()
    try:
        async with connect(server["url"], server["token"]) as client, anyio.create_task_group() as tg:
            results: list[Any] = []

            async def call() -> None:
                results.append(await client.call_tool("execute", {"code": "answer = 6 * 7\nanswer"}))

            tg.start_soon(call)
            (pending,) = await wait_pending(kernel)
            assert pending["tool"] == "execute" and pending["arguments"] == {"code": "answer = 6 * 7\nanswer"}
            assert kernel.value("'answer' in globals()") is False
            await in_kernel(kernel, "_panel.approve()")
        (result,) = results
        assert "42" in text_of(result)
        assert kernel.value("answer") == 42
    finally:
        kernel.run("%mcp mode tools").raise_for_error()


async def test_closing_the_panel_denies_waiting_calls_and_later_ones(server: dict, kernel: KernelHandle) -> None:
    open_panel(kernel)
    kernel.run("runs.clear()").raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def call() -> None:
                results.append(await client.call_tool("drop_table", {"name": "waiting"}))

            tg.start_soon(call)
            await wait_pending(kernel)
            await in_kernel(kernel, "_panel.close()")
        (result,) = results
        assert result.is_error and "the approval panel was closed" in text_of(result), text_of(result)
        assert "declined" in text_of(result)
        assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.approver is None")
        started = time.perf_counter()
        result = await client.call_tool("drop_table", {"name": "later"})
        assert time.perf_counter() - started < 2
        assert result.is_error and "no approval panel" in text_of(result) and "%mcp panel" in text_of(result)
    assert kernel.value("runs") == []


async def test_a_click_on_a_subshell_is_handled_while_a_cell_runs(server: dict, kernel: KernelHandle) -> None:
    """JupyterLab 4.6+ sends widget messages on a kernel subshell: the owner can approve during a long cell."""
    open_panel(kernel)
    kernel.run("runs.clear()").raise_for_error()
    kernel.kc.control_channel.send(kernel.kc.session.msg("create_subshell_request", {}))
    subshell = kernel.kc.get_control_msg(timeout=10)["content"]["subshell_id"]
    async with connect(server["url"], server["token"]) as client, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def call() -> None:
            results.append(await client.call_tool("drop_table", {"name": "while_busy"}))
            results.append(time.perf_counter())

        tg.start_soon(call)
        (pending,) = await wait_pending(kernel)
        button = await eventually(
            kernel,
            f"[a.approve.model_id for i, a in nbmcp.inkernel.oversight.panel.current_panel().shown.approvals.items()"
            f" if i == {pending['id']!r}]",
            lambda ids: len(ids) == 1,
        )
        cell = kernel.start_cell("import time; time.sleep(8)")
        message = kernel.kc.session.msg(
            "comm_msg", {"comm_id": button[0], "data": {"method": "custom", "content": {"event": "click"}}}
        )
        message["header"]["subshell_id"] = subshell
        clicked = time.perf_counter()
        kernel.kc.shell_channel.send(message)
    result, answered = results
    assert text_of(result) == "dropped while_busy"
    assert answered - clicked < 4, f"the click waited for the cell ({answered - clicked:.1f} s)"
    await anyio.to_thread.run_sync(kernel.wait_idle, cell)
    assert kernel.value("runs") == ["while_busy"]
