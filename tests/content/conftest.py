"""Helpers shared by the nbmcp.content tests."""

from __future__ import annotations

import base64
import io

from mcp.types import ImageContent, TextContent
from PIL import Image

from nbmcp.content import Converted


def png_bytes(width: int, height: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def decoded_image(block: ImageContent) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


def only_text(conv: Converted) -> str:
    assert len(conv.content) == 1 and isinstance(conv.content[0], TextContent), conv.content
    return conv.content[0].text
