"""Rich prompts: strings, message lists, images and embedded resources reach the SDK client as such, both eras."""

from __future__ import annotations

import base64
import io

import pytest
from mcp import MCPError
from mcp.types import EmbeddedResource, ImageContent, TextContent
from PIL import Image

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES_PINNED

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SETUP = """
import nbmcp, pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image
from mcp.types import PromptMessage, ImageContent, TextContent

sales = pd.DataFrame({"customer": [f"c{i}" for i in range(30)], "revenue": [float(i) for i in range(30)]})
nbmcp.expose(sales, "sales")


@nbmcp.prompt
def plain(topic: str) -> str:
    return f"Tell me about {topic}"


@nbmcp.prompt
def conversation() -> list:
    return [
        {"role": "user", "content": "What is in sales?"},
        {"role": "assistant", "content": "A frame of customers."},
        PromptMessage(role="user", content=ImageContent(type="image", data="aGk=", mime_type="image/png")),
        PromptMessage(role="user", content=TextContent(type="text", text="and this")),
    ]


@nbmcp.prompt
def chart() -> list:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(sales.revenue)
    plt.close(fig)
    return ["Explain this chart:", fig, Image.new("RGB", (3000, 1000), "red")]


@nbmcp.prompt
def with_page(offset: str = "0") -> list:
    return [
        "Here are some rows of sales:",
        nbmcp.embed_resource(f"nbmcp://objects/sales/rows/{offset}/5"),
        {"role": "assistant", "content": nbmcp.embed_resource("nbmcp://objects/sales")},
    ]


@nbmcp.prompt
def missing() -> list:
    return [nbmcp.embed_resource("nbmcp://objects/nothing")]


@nbmcp.prompt
def crashes() -> str:
    raise RuntimeError("the prompt broke")
"""


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, SETUP)


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_strings_and_message_lists(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.get_prompt("plain", {"topic": "revenue"})
        assert [(m.role, m.content.text) for m in result.messages] == [("user", "Tell me about revenue")]
        result = await client.get_prompt("conversation", {})
        assert [m.role for m in result.messages] == ["user", "assistant", "user", "user"]
        assert result.messages[1].content.text == "A frame of customers."
        image = result.messages[2].content
        assert isinstance(image, ImageContent) and image.data == "aGk=" and image.mime_type == "image/png"
        assert isinstance(result.messages[3].content, TextContent) and result.messages[3].content.text == "and this"


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_figures_and_pil_images_become_images_sized_like_tool_results(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.get_prompt("chart", {})
        kinds = [type(m.content) for m in result.messages]
        assert kinds == [TextContent, ImageContent, ImageContent]
        for message in result.messages[1:]:
            picture = Image.open(io.BytesIO(base64.b64decode(message.content.data)))
            assert max(picture.size) <= 1568
        assert Image.open(io.BytesIO(base64.b64decode(result.messages[2].content.data))).size == (1568, 523)


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_embedded_resources_of_exposed_frames(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.get_prompt("with_page", {"offset": "25"})
        assert [m.role for m in result.messages] == ["user", "user", "assistant"]
        page = result.messages[1].content
        assert isinstance(page, EmbeddedResource)
        assert page.resource.uri == "nbmcp://objects/sales/rows/25/5" and page.resource.mime_type == "text/markdown"
        assert "c25" in page.resource.text and "c29" in page.resource.text and "c24" not in page.resource.text
        summary = result.messages[2].content
        assert isinstance(summary, EmbeddedResource) and summary.resource.uri == "nbmcp://objects/sales"


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_failing_prompts_say_why(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("crashes", {})
        assert "crashes" in str(raised.value) and "the prompt broke" in str(raised.value)
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("missing", {})
        assert "nothing" in str(raised.value) and "sales" in str(raised.value)
        assert (await client.get_prompt("plain", {"topic": "x"})).messages  # the server carries on
