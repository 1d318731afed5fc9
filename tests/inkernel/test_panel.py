"""The panel in a real kernel: what it shows, that it updates from its own thread (even while a cell runs),
and that its controls (driven through the Jupyter comm protocol, as a frontend does) change the server:
tool and resource toggles, permission modes with ``tools/list_changed``.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import comm
import pytest
from mcp.types import Implementation

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import eventually, start_server
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BUILTIN_READ = {"list_objects", "describe_object", "read_rows", "query", "view_object"}


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    setup = """
import nbmcp.inkernel.oversight.approvals, nbmcp.inkernel.oversight.panel

@nbmcp.tool
def hello(name: str = "world") -> str:
    return f"hello {name}"

@nbmcp.tool
def ping_busy() -> str:
    return "pong"

nbmcp.expose({"alpha": 0.1}, "settings")
_panel = nbmcp.panel()
"""
    return start_server(kernel, setup)


def displayed(kernel: KernelHandle, code: str) -> list[dict[str, Any]]:
    """The mime bundles a cell displayed or returned."""
    bundles: list[dict[str, Any]] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] in ("execute_result", "display_data"):
            bundles.append(msg["content"]["data"])
        elif msg["msg_type"] == "error":
            raise AssertionError(msg["content"]["evalue"])

    kernel.kc.execute_interactive(code, output_hook=hook, timeout=30)
    return bundles


def send_comm(kernel: KernelHandle, comm_id: str, data: dict[str, Any]) -> None:
    """Send a comm message to a widget model exactly as a Jupyter frontend does."""
    kernel.kc.shell_channel.send(kernel.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))


def frontend_update(kernel: KernelHandle, comm_id: str, **state: Any) -> None:
    send_comm(kernel, comm_id, {"method": "update", "state": state, "buffer_paths": []})


async def tool_names(client: Any) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


def test_the_panel_is_a_widget_and_showing_it_twice_shares_one_model(server: dict, kernel: KernelHandle) -> None:
    (first,) = displayed(kernel, "nbmcp.panel()")
    (second,) = displayed(kernel, "%mcp panel")
    assert WIDGET_VIEW in first and WIDGET_VIEW in second
    assert first[WIDGET_VIEW]["model_id"] == second[WIDGET_VIEW]["model_id"] == kernel.value("_panel.model_id")
    assert kernel.value("len(nbmcp.inkernel.oversight.panel.open_panels())") == 1
    header = kernel.value("_panel.shown.header")
    assert server["url"] in header and "tools" in header
    assert kernel.value("_panel.shown.mode.value") == "tools" and kernel.value("_panel.shown.policy.value") == "ask"
    assert server["token"] not in json.dumps(kernel.value("[c.value for c in _panel.children if hasattr(c, 'value')]"))


async def test_the_panel_lists_clients_calls_tools_and_resources(server: dict, kernel: KernelHandle) -> None:
    info = Implementation(name="panel-test-client", version="2.5")
    async with connect(server["url"], server["token"], client_info=info) as client:
        assert text_of(await client.call_tool("hello", {"name": "panel"})) == "hello panel"
    calls = await eventually(kernel, "_panel.shown.calls", lambda v: "panel-test-client" in v)
    assert "hello" in calls and ">ok<" in calls
    clients = await eventually(kernel, "_panel.shown.clients", lambda v: "panel-test-client" in v)
    assert "2.5" in clients
    toggles = kernel.value("{' '.join(k): [t.label, t.value, t.disabled] for k, t in _panel.shown.toggles.items()}")
    assert toggles["tools hello"] == ["hello", True, False]
    assert toggles["builtin read_rows"] == ["read_rows (built-in)", True, True]
    assert toggles["objects settings"] == ["nbmcp://objects/settings", True, False]


async def test_the_panel_updates_while_a_cell_runs(server: dict, kernel: KernelHandle) -> None:
    """The updater thread sends widget updates on IOPub while the main thread is busy in a cell."""
    cell = kernel.start_cell("import time; time.sleep(8)")
    async with connect(server["url"], server["token"]) as client:
        assert text_of(await client.call_tool("ping_busy", {})) == "pong"  # answered while the cell runs
    update_seen_while_busy, idle = False, False
    deadline = time.monotonic() + 30
    while not idle and time.monotonic() < deadline:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if msg["msg_type"] == "comm_msg" and "ping_busy" in json.dumps(msg["content"]["data"]):
            update_seen_while_busy = True
        if msg["parent_header"].get("msg_id") == cell and msg["msg_type"] == "status":
            idle = msg["content"]["execution_state"] == "idle"
            if idle:
                assert update_seen_while_busy, "the panel did not update while the cell ran"
    assert idle and update_seen_while_busy
    kernel.kc.get_shell_msg(timeout=10)  # the cell's execute_reply


async def test_a_tool_toggled_off_in_the_panel_is_no_longer_served(server: dict, kernel: KernelHandle) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    toggle = kernel.value("_panel.shown.toggles[('tools', 'hello')].model_id")
    async with connect(server["url"], server["token"], mode="legacy", message_handler=on_message) as client:
        assert "hello" in await tool_names(client)
        frontend_update(kernel, toggle, value=False)
        with anyio.fail_after(10):
            await changed.wait()
        assert "hello" not in await tool_names(client)
        assert kernel.value("nbmcp.inkernel.registry.default_registry.tools['hello'].enabled") is False
        assert (await client.call_tool("hello", {})).is_error
        changed = anyio.Event()
        frontend_update(kernel, toggle, value=True)
        with anyio.fail_after(10):
            await changed.wait()
        assert text_of(await client.call_tool("hello", {})) == "hello world"


async def test_an_object_toggled_off_in_the_panel_is_hidden(server: dict, kernel: KernelHandle) -> None:
    toggle = kernel.value("_panel.shown.toggles[('objects', 'settings')].model_id")
    async with connect(server["url"], server["token"]) as client:
        listed = await client.call_tool("list_objects", {})
        assert "settings" in text_of(listed)
        frontend_update(kernel, toggle, value=False)
        await eventually(
            kernel, "nbmcp.inkernel.registry.default_registry.objects['settings'].enabled", lambda v: v is False
        )
        assert "settings" not in text_of(await client.call_tool("list_objects", {}))
        assert "settings" not in {str(r.uri) for r in (await client.list_resources()).resources}
        frontend_update(kernel, toggle, value=True)
        await eventually(
            kernel, "nbmcp.inkernel.registry.default_registry.objects['settings'].enabled", lambda v: v is True
        )
        assert "settings" in text_of(await client.call_tool("list_objects", {}))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_switching_mode_notifies_and_read_only_hides_user_tools(
    server: dict, kernel: KernelHandle, mode: str
) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    mode_toggle = kernel.value("_panel.shown.mode.model_id")
    try:
        async with connect(server["url"], server["token"], mode=mode, message_handler=on_message) as client:
            assert {"hello", "ping_busy"} <= await tool_names(client)
            if mode == "legacy":
                await anyio.to_thread.run_sync(kernel.run, "_panel.mode = 'read-only'")
                with anyio.fail_after(10):
                    await changed.wait()
            else:
                async with client.listen(tools_list_changed=True) as subscription:
                    await anyio.to_thread.run_sync(kernel.run, "_panel.mode = 'read-only'")
                    with anyio.fail_after(10):
                        event = await subscription.__anext__()
                    assert type(event).__name__ == "ToolsListChanged"
            assert await tool_names(client) == BUILTIN_READ  # user tools hidden, no execute
            assert (await client.call_tool("hello", {})).is_error
            header = await eventually(kernel, "_panel.shown.header", lambda v: "read-only" in v)
            assert "<b>read-only</b>" in header
            assert await eventually(kernel, "_panel.shown.mode.value", lambda v: v == "read-only")
            # The Mode buttons, clicked in the frontend (selection widgets sync their index): execute.
            frontend_update(kernel, mode_toggle, index=2)
            await eventually(
                kernel, "nbmcp.inkernel.lifecycle.current_server().mcp_server.mode", lambda v: v == "execute"
            )
            assert await tool_names(client) == BUILTIN_READ | {
                "hello",
                "ping_busy",
                "execute",
                "task_status",
                "task_result",
                "task_cancel",
            }
    finally:
        kernel.run("%mcp mode tools").raise_for_error()
    assert "mode is tools" in kernel.run("%mcp mode").raise_for_error().stdout
    await eventually(kernel, "_panel.shown.mode.value", lambda v: v == "tools")


async def test_the_panel_follows_the_server_across_stop_and_start(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp stop").raise_for_error()
    await eventually(kernel, "_panel.shown.header", lambda v: "not running" in v)
    kernel.run("%mcp start").raise_for_error()
    url = kernel.value("nbmcp.info().url")
    await eventually(kernel, "_panel.shown.header", lambda v: url in v)
    # Re-attached: the new server asks this panel for approvals.
    assert await eventually(
        kernel,
        "nbmcp.inkernel.oversight.approvals.broker.approver is not None and"
        " nbmcp.inkernel.lifecycle.current_server().mcp_server.approver is "
        "nbmcp.inkernel.oversight.approvals.broker.approver",
        lambda v: v is True,
    )


@pytest.fixture
def in_process_server() -> Iterator[Any]:
    """A server in this (non-kernel) process: no execute runner, and no frontend for widget comms."""
    import nbmcp
    from nbmcp.inkernel import lifecycle as http

    nbmcp.start()
    try:
        yield http.current_server()
    finally:
        import nbmcp.inkernel.oversight.panel

        panel = nbmcp.inkernel.oversight.panel.current_panel()
        if panel is not None:
            panel.close()
        nbmcp.stop()


async def test_outside_a_kernel_the_panel_reports_problems_and_denies_approvals(in_process_server: Any) -> None:
    import nbmcp.inkernel.oversight.panel
    from nbmcp.exceptions import ApprovalDenied

    panel = nbmcp.inkernel.oversight.panel.show_panel()
    assert panel.is_open  # a dummy comm: there is no frontend behind it
    # As if clicked (a selection widget syncs its index): execute needs a kernel here.
    frontend = {"method": "update", "state": {"index": 2}, "buffer_paths": []}
    comm.get_comm_manager().get_comm(panel.shown.mode.model_id).handle_msg(
        {"content": {"data": frontend}, "buffers": []}
    )
    assert in_process_server.mcp_server.mode == "tools"
    deadline = time.monotonic() + 10
    while "execute mode needs a kernel" not in panel.shown.message and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert "execute mode needs a kernel" in panel.shown.message
    while panel.shown.mode.value != "tools" and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert panel.shown.mode.value == "tools"  # the buttons show the server's real mode again
    approver = in_process_server.mcp_server.approver
    assert approver is not None
    with pytest.raises(ApprovalDenied, match="no Jupyter frontend"):
        await approver("fit", {}, "client")


def test_what_the_panel_shows_reads_back_as_plain_frozen_data(in_process_server: Any) -> None:
    import nbmcp.inkernel.oversight.panel

    panel = nbmcp.inkernel.oversight.panel.show_panel()
    shown = panel.shown
    assert in_process_server.info.url in shown.header and "No calls waiting" in shown.approvals_title
    assert (shown.mode.label, shown.mode.value, shown.mode.disabled) == ("Mode", "tools", False)
    assert (shown.policy.value, shown.timeout.value) == ("ask", in_process_server.mcp_server.approval_timeout)
    assert shown.approvals == {} and shown.mode.model_id == panel.children[1].children[0].model_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        shown.header = "changed"  # type: ignore[misc]


def test_closing_the_panel_closes_every_widget_model_it_made(server: dict, kernel: KernelHandle) -> None:
    """No comm leaks: the panel's widgets, their layouts and styles all close with it."""
    kernel.run("import ipywidgets; _before = set(ipywidgets.Widget.widgets)").raise_for_error()
    code = "_extra = nbmcp.inkernel.oversight.panel.Panel()\n_extra_ids = set(ipywidgets.Widget.widgets) - _before"
    kernel.run(code).raise_for_error()
    assert kernel.value("len(_extra_ids)") > 20
    kernel.run("_extra.close()").raise_for_error()
    assert kernel.value("sorted(_extra_ids & set(ipywidgets.Widget.widgets))") == []
    assert kernel.value("_panel.is_open")  # the other panel is untouched


async def test_a_removed_tool_leaves_the_panel(server: dict, kernel: KernelHandle) -> None:
    kernel.run("@nbmcp.tool\ndef short_lived() -> str:\n    return 'x'\n").raise_for_error()
    toggles = "sorted(' '.join(k) for k in _panel.shown.toggles if k[0] == 'tools')"
    await eventually(kernel, toggles, lambda v: "tools short_lived" in v)
    gone = "ipywidgets.Widget.widgets[_panel.shown.toggles[('tools', 'short_lived')].model_id]"
    kernel.run(f"import ipywidgets; _gone = {gone}").raise_for_error()
    kernel.run("nbmcp.inkernel.registry.default_registry.remove_tool('short_lived')").raise_for_error()
    await eventually(kernel, toggles, lambda v: "tools short_lived" not in v)
    assert kernel.value("_gone.comm is None")  # its widget model was closed, not leaked
