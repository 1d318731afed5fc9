"""nbmcp.content.values: any Python value -> MCP content (JSON data, numpy, pass-through, mixed lists)."""

from __future__ import annotations

import dataclasses
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydantic
import pytest
from mcp.types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from nbmcp.content import convert
from tests.content.conftest import only_text


def test_none_gives_no_content():
    conv = convert(None)
    assert conv.content == [] and conv.structured is None and not conv.is_error


def test_str_is_text():
    assert only_text(convert("héllo\nworld")) == "héllo\nworld"
    assert convert("x").structured is None


def test_dict_is_json_text_and_structured():
    value = {"a": 1, "b": [1, 2], "when": pd.Timestamp("2024-01-02"), "n": np.int64(5), "x": float("nan")}
    conv = convert(value)
    text = only_text(conv)
    assert json.loads(text) == {"a": 1, "b": [1, 2], "when": "2024-01-02T00:00:00", "n": 5, "x": None}
    assert text.startswith("{\n  ")  # indent=2
    assert conv.structured == json.loads(text)
    json.dumps(conv.structured, allow_nan=False)


@pytest.mark.parametrize("value", [[1, "a", None], (1, 2), 3, 2.5, True])
def test_other_json_values_are_wrapped(value):
    conv = convert(value)
    expected = list(value) if isinstance(value, tuple) else value
    assert json.loads(only_text(conv)) == expected
    assert conv.structured == {"result": expected}


def test_dataclass_and_pydantic_are_json():
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Model(pydantic.BaseModel):
        name: str
        tags: list[str]

    assert convert(Point(1, 2)).structured == {"x": 1, "y": 2}
    assert convert(Model(name="n", tags=["a"])).structured == {"name": "n", "tags": ["a"]}


def test_unknown_object_is_bounded_repr():
    class Huge:
        def __repr__(self) -> str:
            return "H" * 10_000

    text = only_text(convert(Huge()))
    assert text.startswith("H" * 100)
    assert len(text) < 2_100 and "8000 more characters" in text

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "repr failed: RuntimeError: no repr" in only_text(convert(Broken()))


def test_numpy_array_and_scalar():
    conv = convert(np.arange(100_000).reshape(1000, 100))
    text = only_text(conv)
    assert text.startswith("numpy.ndarray shape=(1000, 100) dtype=int64")
    assert len(text) < 2_200
    assert conv.structured == {"shape": [1000, 100], "dtype": "int64"}
    assert convert(np.int64(7)).structured == {"result": 7}


def test_mcp_content_passes_through():
    text = TextContent(type="text", text="t")
    image = ImageContent(type="image", data="aGk=", mime_type="image/png")
    audio = AudioContent(type="audio", data="aGk=", mime_type="audio/wav")
    link = ResourceLink(type="resource_link", name="r", uri="nbmcp://objects/x")
    embedded = EmbeddedResource(type="resource", resource=TextResourceContents(uri="a://b", text="body"))
    for block in (text, image, audio, link, embedded):
        conv = convert(block)
        assert conv.content == [block] and conv.content[0] is block
    blocks = [text, image, link]
    conv = convert(blocks)
    assert conv.content == blocks and all(a is b for a, b in zip(conv.content, blocks, strict=True))
    assert conv.structured is None


def test_call_tool_result_passes_through():
    result = CallToolResult(
        content=[TextContent(type="text", text="done")], structured_content={"ok": True}, is_error=True
    )
    conv = convert(result)
    assert conv.content == result.content and conv.structured == {"ok": True} and conv.is_error
    back = conv.to_result()
    assert isinstance(back, CallToolResult)
    assert back.content == result.content and back.structured_content == {"ok": True} and back.is_error


def test_mixed_list_converts_each_item():
    fig = plt.figure(figsize=(2, 2))
    try:
        conv = convert(["caption", fig, pd.DataFrame({"a": [1]})])
    finally:
        plt.close(fig)
    kinds = [type(b).__name__ for b in conv.content]
    assert kinds == ["TextContent", "ImageContent", "TextContent"]
    assert conv.content[0].text == "caption"
    assert conv.content[2].text.startswith("| a |")
