"""`execute`'s structured content carries what its text carries (values, streams, errors; images by reference),
within the same output budget: some clients (fast-agent) show the model only ``structuredContent``.

`nbmcp serve` over stdio, the SDK client, a real kernel.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, TextContent

from tests.serve.test_tools import serve_params

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

BUDGET = 5000


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    workdir = tmp_path_factory.mktemp("structured")
    async with Client(serve_params("--no-record", "--output-budget", str(BUDGET), cwd=workdir)) as c:
        yield c


async def structured(client: Client, code: str) -> tuple[Any, dict[str, Any]]:
    result = await client.call_tool("execute", {"code": code})
    return result, result.structured_content


async def test_the_value_is_in_the_structured_content(client: Client) -> None:
    _, sc = await structured(client, "6*7")
    assert sc["outputs"] == [{"type": "execute_result", "mime_types": ["text/plain"], "text": "42"}]


async def test_streams_and_the_value_in_order(client: Client) -> None:
    result, sc = await structured(client, "import sys\nprint('hello')\nprint('careful', file=sys.stderr)\n'done'")
    assert sc["outputs"] == [
        {"type": "stream", "name": "stdout", "text": "hello\n"},
        {"type": "stream", "name": "stderr", "text": "careful\n"},
        {"type": "execute_result", "mime_types": ["text/plain"], "text": "'done'"},
    ]
    assert [b.text for b in result.content[:3]] == ["hello\n", "[stderr]\ncareful\n", "'done'"]  # as before


async def test_an_error_shows_its_name_value_and_traceback(client: Client) -> None:
    result, sc = await structured(client, "def f():\n    raise ValueError('bad input')\nf()")
    assert result.is_error
    (error,) = [o for o in sc["outputs"] if o["type"] == "error"]
    assert error["ename"] == "ValueError" and error["evalue"] == "bad input"
    assert error["text"].startswith("ValueError: bad input") and "raise ValueError" in error["text"]


async def test_a_huge_output_is_cut_in_the_structured_content_too(client: Client) -> None:
    _, sc = await structured(client, "for i in range(5000): print(f'line {i:05d} ' + 'x' * 40)\n'end'")
    assert sc["truncated"] is True
    text = "".join(o.get("text") or "" for o in sc["outputs"])
    assert "line 00000" in text and "line 04999" in text and "characters cut" in text
    assert len(json.dumps(sc)) < BUDGET + 2000  # the budget, plus the envelope (kernel, status)
    assert sc["outputs"][-1] == {"type": "execute_result", "mime_types": ["text/plain"], "text": "'end'"}
    uri = next(w for w in text.replace("]", " ").split() if w.startswith("nbmcp://outputs/"))
    assert "line 00000" in (await client.read_resource(uri)).contents[0].text  # the text's own full output


async def test_an_image_is_named_not_copied(client: Client) -> None:
    code = (
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=50)\nplt.plot([1, 2, 3])\nplt.show()"
    )
    result, sc = await structured(client, code)
    (position,) = [i for i, b in enumerate(result.content) if isinstance(b, ImageContent)]
    (image,) = sc["outputs"]
    assert image["type"] == "display_data" and "image/png" in image["mime_types"]
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(result.content[position].data))) as sent:
        size = f"{sent.width}x{sent.height}"
    assert image["images"] == [f"image/png, {size}, content block {position + 1}"]
    assert "text" not in image and len(json.dumps(sc)) < 2000  # no base64 in the structured content
    assert not any(isinstance(b, TextContent) and b.meta for b in result.content)  # nbmcp's marks are gone
