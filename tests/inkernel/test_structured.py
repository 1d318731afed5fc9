"""Structured output, JSON-Schema inputs, annotations and icons of in-kernel tools and the server's icons: the SDK
client in both eras against a real kernel."""

from __future__ import annotations

import json

import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES_PINNED, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SETUP = '''
import dataclasses, typing
import nbmcp, pandas as pd, pydantic
from nbmcp import Context


class Stats(typing.TypedDict):
    mean: float
    count: int


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Customer(pydantic.BaseModel):
    name: str
    revenue: float


@nbmcp.tool
def stats(values: list[float]) -> Stats:
    """Mean and count."""
    return {"mean": sum(values) / len(values), "count": len(values)}


@nbmcp.tool
def stats_wrong() -> Stats:
    return {"mean": "not a number", "count": 3}


@nbmcp.tool
def point() -> Point:
    return Point(1.5, -2.0)


@nbmcp.tool
def customer() -> Customer:
    return Customer(name="ana", revenue=120.0)


@nbmcp.tool
def counts() -> dict[str, int]:
    return {"a": 1, "b": 2}


@nbmcp.tool
def stamped() -> dict[str, typing.Any]:
    import numpy as np
    return {"when": pd.Timestamp("2024-01-02"), "n": np.int64(3)}


@nbmcp.tool
def squares(n: int) -> list[int]:
    return [i * i for i in range(n)]


@nbmcp.tool
async def with_context(n: int, ctx: Context) -> dict[str, int]:
    await ctx.info("working")
    return {"n": n}


@nbmcp.tool
def greeting() -> str:
    return "hello"


@nbmcp.tool
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})


SHAPE = {
    "type": "object",
    "$defs": {
        "circle": {"type": "object", "properties": {"r": {"type": "number", "minimum": 0}}, "required": ["r"],
                   "additionalProperties": False},
        "square": {"type": "object", "properties": {"side": {"type": "number"}}, "required": ["side"],
                   "additionalProperties": False},
    },
    "properties": {
        "shape": {"oneOf": [{"$ref": "#/$defs/circle"}, {"$ref": "#/$defs/square"}]},
        "label": {"type": "string"},
    },
    "required": ["shape"],
    "additionalProperties": False,
}


@nbmcp.tool(input_schema=SHAPE, read_only=True, idempotent=True, open_world=False, destructive=False,
            icons=["https://example.org/shape.png", {"src": "data:image/png;base64,AAAA", "mimeType": "image/png"}])
def area(shape: dict, label: str = "shape") -> str:
    value = 3.14159 * shape["r"] ** 2 if "r" in shape else shape["side"] ** 2
    return f"{label}: {value:.2f}"
'''


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, SETUP, config={"icons": ["https://example.org/notebook.png"]})


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_data_annotations_get_an_output_schema_and_validated_structured_content(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["stats"].output_schema["properties"].keys() == {"mean", "count"}
        assert tools["point"].output_schema["properties"].keys() == {"x", "y"}
        assert tools["customer"].output_schema["properties"].keys() == {"name", "revenue"}
        assert tools["counts"].output_schema["additionalProperties"] == {"type": "integer"}
        assert tools["squares"].output_schema["properties"]["result"]["type"] == "array"
        assert tools["with_context"].output_schema is not None
        assert "ctx" not in tools["with_context"].input_schema["properties"]
        for plain in ("greeting", "frame", "area"):
            assert tools[plain].output_schema is None, plain

        result = await client.call_tool("stats", {"values": [1, 2, 3]})
        assert result.structured_content == {"mean": 2.0, "count": 3}
        assert json.loads(text_of(result)) == {"mean": 2.0, "count": 3}
        assert (await client.call_tool("point", {})).structured_content == {"x": 1.5, "y": -2.0}
        assert (await client.call_tool("customer", {})).structured_content == {"name": "ana", "revenue": 120.0}
        assert (await client.call_tool("counts", {})).structured_content == {"a": 1, "b": 2}
        assert (await client.call_tool("squares", {"n": 3})).structured_content == {"result": [0, 1, 4]}
        # values JSON cannot hold as they are, inside an Any, are made safe like every result
        assert (await client.call_tool("stamped", {})).structured_content == {"when": "2024-01-02T00:00:00", "n": 3}
        assert (await client.call_tool("with_context", {"n": 7})).structured_content == {"n": 7}

        table = await client.call_tool("frame", {})
        assert "| a" in text_of(table) and table.structured_content["rows"] == [
            {"a": 1, "b": "x"},
            {"a": 2, "b": "y"},
        ]


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_a_value_that_breaks_its_annotation_is_a_tool_error_naming_the_field(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.call_tool("stats_wrong", {})
        assert result.is_error
        assert "'mean'" in text_of(result) and "stats_wrong" in text_of(result)
        assert (await client.call_tool("stats", {"values": [4]})).structured_content == {"mean": 4.0, "count": 1}


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_input_schema_is_verbatim_and_validated(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        area = tools["area"]
        assert area.input_schema["$defs"]["circle"]["additionalProperties"] is False
        assert area.input_schema["properties"]["shape"]["oneOf"][1] == {"$ref": "#/$defs/square"}
        assert area.input_schema["additionalProperties"] is False and area.input_schema["required"] == ["shape"]
        hints = area.annotations
        assert (hints.read_only_hint, hints.idempotent_hint, hints.open_world_hint, hints.destructive_hint) == (
            True,
            True,
            False,
            False,
        )
        assert [icon.src for icon in area.icons] == ["https://example.org/shape.png", "data:image/png;base64,AAAA"]
        assert area.icons[1].mime_type == "image/png"
        if mode == "legacy":  # the 2026 era's discovery need not name the server
            assert [icon.src for icon in client.server_info.icons] == ["https://example.org/notebook.png"]

        assert text_of(await client.call_tool("area", {"shape": {"side": 2}})) == "shape: 4.00"
        assert text_of(await client.call_tool("area", {"shape": {"r": 1}, "label": "c"})) == "c: 3.14"
        for arguments, needle in [
            ({"shape": {"r": -1}}, "shape"),
            ({"shape": {"side": 2, "r": 1}}, "shape"),
            ({"shape": {"side": 2}, "colour": "red"}, "colour"),
            ({"label": "no shape"}, "'shape' is a required property"),
        ]:
            result = await client.call_tool("area", arguments)
            assert result.is_error and needle in text_of(result), (arguments, text_of(result))
            assert "invalid arguments for tool 'area'" in text_of(result)


def test_bad_input_schema_or_icon_fails_at_decoration(server: dict, kernel: KernelHandle) -> None:
    for code, needle in [
        (
            '@nbmcp.tool(input_schema={"type": "object", "properties": {"y": {}}})\ndef f(x):\n    return 1',
            "'y'",
        ),
        ('@nbmcp.tool(input_schema={"type": "array"})\ndef f(x: int) -> int:\n    return x', "object"),
        (
            '@nbmcp.tool(input_schema={"type": "object", "properties": {"x": {"type": 5}}})\ndef f(x):\n    return x',
            "not a valid JSON Schema",
        ),
        ('@nbmcp.tool(icons=["ftp://x/icon.png"])\ndef f(x: int) -> int:\n    return x', "https: or data: URL"),
    ]:
        out = kernel.run(code)
        assert out.error is not None and needle in out.error, (code, out.error)
