"""MCP logging from the in-kernel server: ``logging/setLevel`` (handshake era), per-request levels (2026 era),
``ctx.info`` and friends, and Python ``logging`` records a tool emits, with the SDK client against a real kernel."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, SetLevelRequest, SetLevelRequestParams

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore:The logging capability is deprecated"),
]

TOOLS = '''
import logging, nbmcp
from nbmcp import Context

tool_log = logging.getLogger("notebook.tool")
tool_log.setLevel(logging.DEBUG)


@nbmcp.tool
def chatty(n: int = 1) -> str:
    """Logs at every level, through Python's logging."""
    for i in range(n):
        tool_log.debug("debug %d", i)
    tool_log.info("info record")
    tool_log.warning("warning record")
    tool_log.error("error record")
    return "done"


@nbmcp.tool
async def tells(ctx: Context) -> str:
    """Logs through the request context."""
    await ctx.debug("ctx debug")
    await ctx.info("ctx info")
    await ctx.warning("ctx warning")
    return "told"
'''


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, TOOLS)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str | None]] = []

    async def __call__(self, params) -> None:
        self.messages.append((params.level, params.data, params.logger))

    def take(self) -> list[tuple[str, str, str | None]]:
        taken, self.messages = self.messages, []
        return taken


async def test_handshake_era_set_level_filters_records_and_ctx_logs(server: dict) -> None:
    inbox = Inbox()
    async with connect(server["url"], server["token"], mode="legacy", logging_callback=inbox) as client:
        assert client.server_capabilities.logging is not None
        # Before setLevel: the default, info and above.
        assert text_of(await client.call_tool("chatty", {})) == "done"
        assert inbox.take() == [
            ("info", "info record", "notebook.tool"),
            ("warning", "warning record", "notebook.tool"),
            ("error", "error record", "notebook.tool"),
        ]
        await client.set_logging_level("debug")
        result = await client.call_tool("chatty", {"n": 2})
        assert text_of(result) == "done"  # records are log messages, never part of the result
        assert [m[1] for m in inbox.take()] == ["debug 0", "debug 1", "info record", "warning record", "error record"]
        await client.set_logging_level("warning")
        assert text_of(await client.call_tool("tells", {})) == "told"
        assert inbox.take() == [("warning", "ctx warning", None)]
        await client.call_tool("chatty", {})
        assert [m[0] for m in inbox.take()] == ["warning", "error"]


async def test_modern_era_per_request_level(server: dict) -> None:
    inbox = Inbox()
    async with connect(
        server["url"], server["token"], mode="2026-07-28", logging_callback=inbox, log_level="info"
    ) as client:
        await client.call_tool("chatty", {"n": 3})
        assert [m[1] for m in inbox.take()] == ["info record", "warning record", "error record"]
        await client.call_tool("tells", {})
        assert [m[1] for m in inbox.take()] == ["ctx info", "ctx warning"]
    silent = Inbox()
    async with connect(server["url"], server["token"], mode="2026-07-28", logging_callback=silent) as client:
        assert text_of(await client.call_tool("chatty", {})) == "done"
        assert silent.take() == []  # no opt-in on the request: nothing is sent


async def test_invalid_level_is_invalid_params(server: dict) -> None:
    async with connect(server["url"], server["token"], mode="legacy") as client:
        with pytest.raises(MCPError) as raised:
            # model_construct: the SDK client would refuse to send an unknown level itself
            params = SetLevelRequestParams.model_construct(level="loud")
            await client.session.send_request(SetLevelRequest(params=params), EmptyResult)
        assert raised.value.error.code == INVALID_PARAMS


def test_records_outside_calls_still_reach_the_cell(kernel: KernelHandle, server: dict) -> None:
    out = kernel.run("logging.getLogger('cell.logger').warning('from a cell')").raise_for_error()
    assert "from a cell" in out.stderr  # lastResort, as without nbmcp
    out = kernel.run("tool_log.warning('tool logger in a cell')").raise_for_error()
    assert "tool logger in a cell" in out.stderr


def test_basic_config_in_a_cell_still_configures_logging(kernel: KernelHandle, server: dict) -> None:
    # nbmcp adds no handler to the root logger: basicConfig (a no-op when the root has one) still works.
    out = kernel.run(
        "import io\n_stream = io.StringIO()\nlogging.basicConfig(level=logging.INFO, stream=_stream)\n"
        "logging.getLogger('cell.app').info('configured')\nprint(repr(_stream.getvalue()))\n"
        "logging.root.removeHandler(logging.root.handlers[-1]); logging.root.setLevel(logging.WARNING)"
    ).raise_for_error()
    assert "INFO:cell.app:configured" in out.stdout


def test_stop_and_start_leave_logging_as_they_found_it(kernel: KernelHandle, server: dict) -> None:
    out = kernel.run(
        "_before = logging.getLogRecordFactory()\n"
        "nbmcp.stop(); print(logging.getLogRecordFactory() is logging.LogRecord)\n"
        "nbmcp.start(); nbmcp.stop(); nbmcp.start()\n"
        "logging.getLogger('again').warning('still logs')"
    ).raise_for_error()
    assert out.stdout.split() == ["True"] and "still logs" in out.stderr
