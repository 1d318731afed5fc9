"""nbmcp.content.images: figures, PIL images and image bytes -> resized ImageContent."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from mcp.types import ImageContent
from PIL import Image

from nbmcp import content
from nbmcp.content import convert, convert_mime_bundle
from tests.content.conftest import decoded_image, only_text, png_bytes


def test_big_matplotlib_figure_is_resized_png():
    fig = plt.figure(figsize=(40, 30), dpi=100)  # 4000 x 3000 px
    fig.gca().plot([1, 2, 3], [3, 1, 2])
    try:
        conv = convert(fig)
        assert len(conv.content) == 1
        block = conv.content[0]
        assert isinstance(block, ImageContent) and block.mime_type == "image/png"
        img = decoded_image(block)
        assert img.format == "PNG"
        assert max(img.size) <= content.DEFAULT_IMAGE_MAX_PX
        assert max(img.size) > 800  # downscaled, not thumbnailed to nothing
        # an Axes converts to its figure, and the limit is configurable
        small = decoded_image(convert(fig.gca(), image_max_px=300).content[0])
        assert max(small.size) <= 300
    finally:
        plt.close(fig)


def test_big_pil_image_is_resized_keeping_aspect():
    conv = convert(Image.new("RGB", (4000, 3000), "blue"))
    block = conv.content[0]
    assert isinstance(block, ImageContent) and block.mime_type == "image/png"
    img = decoded_image(block)
    assert img.size == (1568, 1176)
    assert img.getpixel((10, 10)) == (0, 0, 255)


def test_image_bytes_are_images():
    small = png_bytes(20, 10)
    block = convert(small).content[0]
    assert isinstance(block, ImageContent) and block.mime_type == "image/png"
    assert base64.b64decode(block.data) == small  # small images are untouched
    buf = io.BytesIO()
    Image.new("RGB", (3000, 100), "green").save(buf, format="JPEG")
    block = convert(buf.getvalue()).content[0]
    assert isinstance(block, ImageContent)
    assert max(decoded_image(block).size) == 1568
    assert only_text(convert(b"not an image")) == "b'not an image'"


def test_resize_image():
    data, mime = content.resize_image(png_bytes(100, 50), 200)
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (100, 50)
    data, mime = content.resize_image(png_bytes(1000, 500), 200)
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (200, 100)
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000)).save(buf, format="JPEG")
    data, mime = content.resize_image(buf.getvalue(), 500, fmt="JPEG")
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (500, 250)
    with pytest.raises(ValueError, match="not a decodable image"):
        content.resize_image(b"\x89PNG\r\n\x1a\ngarbage", 100)


def test_png_bundle_base64_is_resized_image_only():
    payload = base64.b64encode(png_bytes(4000, 3000)).decode()
    conv = convert_mime_bundle({"image/png": payload, "text/plain": "<Figure size 4000x3000 with 1 Axes>"})
    assert len(conv.content) == 1
    assert max(decoded_image(conv.content[0]).size) == 1568
