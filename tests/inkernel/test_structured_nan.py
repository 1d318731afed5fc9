"""Non-finite floats in structured output: NaN and infinities go out as ``null``, and the published output schema
says ``number | null`` wherever it says ``number``, so the SDK client (which validates ``structuredContent``
against ``outputSchema``) accepts the result, and the audit log's "ok" is what the client got.

A real kernel with ``%load_ext nbmcp`` and an audit log; the SDK client in both eras.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from mcp.types import Implementation

from nbmcp.inkernel.oversight.audit import read_lines
from nbmcp.inkernel.protocol.structured import nullable_numbers
from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SETUP = """
import typing
import nbmcp, pydantic


class Summary(typing.TypedDict):
    mean: float
    count: int
    spread: typing.Optional[float]


class Fit(pydantic.BaseModel):
    slope: float
    bounds: list[float]


@nbmcp.tool
def summary() -> Summary:
    '''The mean of nothing.'''
    return {"mean": float("nan"), "count": 0, "spread": float("inf")}


@nbmcp.tool
def fit() -> Fit:
    return Fit(slope=float("-inf"), bounds=[0.5, float("nan")])


@nbmcp.tool
def series() -> list[float]:
    return [1.0, float("nan")]
"""


@pytest.fixture(scope="module")
def server(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("nan-audit") / "calls.jsonl"
    return {**start_server(kernel, SETUP, config={"audit_log": str(path)}), "audit": path}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_nan_and_infinities_arrive_as_null_within_the_published_schema(
    server: dict[str, Any], kernel: KernelHandle, mode: str
) -> None:
    client_info = Implementation(name=f"nan-test-{mode}", version="1")
    async with connect(server["url"], server["token"], mode=mode, client_info=client_info) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["summary"].output_schema["properties"]["mean"]["type"] == ["number", "null"]
        assert tools["summary"].output_schema["properties"]["count"]["type"] == "integer"
        assert tools["fit"].output_schema["properties"]["bounds"]["items"]["type"] == ["number", "null"]
        # the SDK client validates structuredContent against that schema: these calls raised before
        result = await client.call_tool("summary", {})
        assert not result.is_error, text_of(result)
        assert result.structured_content == {"mean": None, "count": 0, "spread": None}
        fitted = await client.call_tool("fit", {})
        assert fitted.structured_content == {"slope": None, "bounds": [0.5, None]}
        assert (await client.call_tool("series", {})).structured_content == {"result": [1.0, None]}
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().audit.flush()")
    entries = [e for e in read_lines(server["audit"]) if e["client"] == client_info.name]
    assert [(e["name"], e["outcome"]) for e in entries if e["kind"] == "tool"] == [
        ("summary", "ok"),
        ("fit", "ok"),
        ("series", "ok"),
    ]


def test_nullable_numbers_leaves_data_and_other_types_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "type": {"type": "number", "default": 1.5},  # a field named "type"
            "enum": {"enum": [1.5, 2.5], "type": "number"},
            "n": {"type": "integer"},
            "either": {"type": ["number", "string"]},
            "maybe": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
        },
        "$defs": {"Inner": {"properties": {"x": {"type": "number"}}}},
        "default": {"type": "number"},
    }
    published = nullable_numbers(schema)
    props = published["properties"]
    assert props["type"] == {"type": ["number", "null"], "default": 1.5}
    assert props["enum"] == {"enum": [1.5, 2.5], "type": ["number", "null"]}
    assert props["n"] == {"type": "integer"} and props["either"] == {"type": ["number", "string", "null"]}
    assert props["maybe"]["anyOf"][0] == {"type": ["number", "null"], "minimum": 0}
    assert published["$defs"]["Inner"]["properties"]["x"]["type"] == ["number", "null"]
    assert published["default"] == {"type": "number"}  # data, not a schema
    assert schema["properties"]["type"]["type"] == "number"  # the original is untouched
    assert json.loads(json.dumps(published)) == published and not math.isnan(1.0)
