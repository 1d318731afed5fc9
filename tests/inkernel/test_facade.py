"""``NbMCPServer`` in process (no kernel, no HTTP): snapshot, call records and outcomes, built-in tools, errors."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from nbmcp.inkernel.registry import Registry, ToolSpec
from nbmcp.inkernel.server import NbMCPServer
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def served(**options: Any) -> tuple[Registry, NbMCPServer]:
    registry = Registry()

    def delete_everything() -> str:
        """Pretend to delete everything."""
        return "deleted"

    def add(a: int, b: int) -> int:
        return a + b

    registry.add_tool(ToolSpec(fn=delete_everything, name="delete_everything", description="", requires_approval=True))
    registry.add_tool(ToolSpec(fn=add, name="add", description="Add two numbers."))
    return registry, NbMCPServer(registry, **options)


@pytest.mark.parametrize("mode", MODES)
async def test_snapshot_and_call_records(mode: str) -> None:
    _, server = served()
    heard = []
    server.call_listeners.append(heard.append)
    async with Client(server.mcp, mode=mode) as client:
        assert text_of(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
        denied = await client.call_tool("delete_everything", {})
        assert denied.is_error and "%mcp panel" in text_of(denied)
        assert "nbmcp/outcome" not in (denied.meta or {})  # the mark is for the recorder, not the client
    snap = server.snapshot()
    assert snap.mode == "tools"
    assert {"list_objects", "describe_object", "read_rows", "query", "view_object", "add", "delete_everything"} == set(
        snap.served_tools
    )
    assert [(c.kind, c.name, c.outcome) for c in snap.calls] == [
        ("tool", "add", "ok"),
        ("tool", "delete_everything", "denied"),
    ]
    assert heard == snap.calls
    assert snap.clients and snap.subscribed == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.mode = "execute"  # type: ignore[misc]


async def test_approval_policy_and_approver_reach_the_pipeline() -> None:
    _, server = served()
    asked = []

    async def approver(tool: str, arguments: dict[str, Any], client: str) -> bool:
        asked.append(tool)
        return True

    server.approver = approver
    async with Client(server.mcp) as client:
        assert text_of(await client.call_tool("delete_everything", {})) == "deleted"
        server.approval_policy = "none"
        refused = await client.call_tool("delete_everything", {})
        assert refused.is_error and "approval policy: none" in text_of(refused)
    assert asked == ["delete_everything"]
    assert [c.outcome for c in server.snapshot().calls] == ["ok", "denied"]


async def test_a_failing_tool_is_an_error_not_a_denial() -> None:
    registry, server = served()

    def broken() -> None:
        raise ValueError("no such column: 'x'")

    registry.add_tool(ToolSpec(fn=broken, name="broken", description=""))
    async with Client(server.mcp) as client:
        result = await client.call_tool("broken", {})
    assert result.is_error and "ValueError: no such column: 'x'" in text_of(result)
    assert server.snapshot().calls[-1].outcome == "error"


async def test_unknown_object_is_resource_not_found_listing_what_exists() -> None:
    registry, server = served()
    registry.expose({"a": 1}, "settings")
    async with Client(server.mcp) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("nbmcp://objects/nope")
        assert caught.value.error.code == INVALID_PARAMS
        assert "'nope'" in caught.value.error.message and "settings" in caught.value.error.message
        with pytest.raises(MCPError, match="not a DataFrame") as caught:
            await client.read_resource("nbmcp://objects/settings/rows/0/5")
        assert caught.value.error.code == INVALID_PARAMS
    assert [c.outcome for c in server.snapshot().calls] == ["error", "error"]


def test_builtin_descriptions_have_no_stray_indentation() -> None:
    server = NbMCPServer(Registry(), execute_runner=lambda code: code)
    server.set_mode("execute")
    tools = server.snapshot().served_tools
    assert tools["execute"].description.startswith(
        "Run Python code in the user's live kernel, between cells, and return its output."
    )
    assert tools["execute"].requires_approval and tools["execute"].main_thread
    for name in ("list_objects", "describe_object", "read_rows", "query", "execute"):
        description = tools[name].description
        assert description == inspect.cleandoc(description)
        assert not any(line.startswith(" ") for line in description.splitlines()), name


async def test_read_rows_columns_come_from_the_page() -> None:
    pd = pytest.importorskip("pandas")
    registry, server = served()
    registry.expose(pd.DataFrame({"k": range(5), "v": list("abcde")}), "frame")
    async with Client(server.mcp) as client:
        page = await client.call_tool("read_rows", {"name": "frame", "offset": 1, "limit": 2})
        empty = await client.call_tool("read_rows", {"name": "frame", "offset": 10, "limit": 2})
    assert page.structured_content["columns"][-2:] == ["k", "v"]
    assert [r["v"] for r in page.structured_content["rows"]] == ["b", "c"]
    assert empty.structured_content["columns"] == page.structured_content["columns"]
    assert empty.structured_content["rows"] == [] and "No rows at offset 10" in text_of(empty)


async def test_a_full_page_keeps_all_its_rows_in_structured_content() -> None:
    pd = pytest.importorskip("pandas")
    registry, server = served()
    wide = pd.DataFrame({f"column_{i}": [f"value {i}-{n}" for n in range(2_000)] for i in range(6)})
    registry.expose(wide, "wide")
    async with Client(server.mcp) as client:
        page = await client.call_tool("read_rows", {"name": "wide", "offset": 500, "limit": 1000})
    assert not page.is_error
    assert len(json.dumps(page.structured_content)) > server.output_budget  # over the budget, kept whole
    rows = page.structured_content["rows"]
    assert len(rows) == 1000 and rows[0]["column_5"] == "value 5-500" and rows[-1]["column_0"] == "value 0-1499"
    assert len(text_of(page)) < server.output_budget + 500  # the text is still cut
