"""Images -> MCP ``ImageContent``, downscaled so the long side is at most ``image_max_px``.

Encoded bytes (PNG, JPEG, GIF, WebP), PIL images and matplotlib figures or axes. Never a full-size 4 MB
plot: figures are rendered at the target size, big photos decoded at a reduced scale. Nothing here
imports matplotlib or PIL until such an object exists (PIL for decoding bytes).
"""

from __future__ import annotations

import base64
import io
import sys
from typing import Any

from mcp.types import ContentBlock, ImageContent

from .converted import Converted, text_block

__all__ = [
    "DEFAULT_IMAGE_MAX_PX",
    "IMAGE_MIMES",
    "figure_converted",
    "figure_of",
    "image_block",
    "image_mime",
    "is_pil_image",
    "pil_converted",
    "resize_image",
]

DEFAULT_IMAGE_MAX_PX = 1568
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_JPEG_FALLBACK_BYTES = 1_500_000


def image_mime(data: bytes) -> str | None:
    """The mime type of encoded image bytes by their signature (the first 12 bytes suffice), else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _encode_pil(img: Any, fmt: str) -> tuple[bytes, str]:
    fmt = fmt.upper()
    if fmt in ("JPG", "JPEG"):
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        return buf.getvalue(), "image/jpeg"
    if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        img = img.convert("RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    data = buf.getvalue()
    if len(data) > _JPEG_FALLBACK_BYTES and img.mode in ("RGB", "L"):  # a photo: JPEG is far smaller
        jpeg, mime = _encode_pil(img, "JPEG")
        if len(jpeg) < len(data):
            return jpeg, mime
    return data, "image/png"


def _shrink_pil(img: Any, max_px: int) -> Any:
    from PIL import Image

    if max(img.size) <= max_px:
        return img
    img = img.copy() if img.mode != "P" else img.convert("RGBA")
    img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    return img


def resize_image(data: bytes, max_px: int, *, fmt: str = "PNG") -> tuple[bytes, str]:
    """Downscale an encoded image so its long side is at most ``max_px`` (aspect kept).

    Returns ``(bytes, mime)``. An image already small enough comes back untouched (same bytes, its own
    mime). A resized image is encoded as ``fmt`` (PNG, or JPEG), except that a large opaque PNG falls
    back to JPEG when that is smaller. Raises ``ValueError`` if the bytes are not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a decodable image ({len(data)} bytes): {exc}") from exc
    mime = Image.MIME.get(img.format or "", image_mime(data) or "application/octet-stream")
    if max(img.size) <= max_px:
        return data, mime
    if img.format == "JPEG":
        img.draft("RGB", (max_px, max_px))  # decode at a reduced scale: fast for big photos
    img.load()
    return _encode_pil(_shrink_pil(img, max_px), fmt)


def image_block(data: bytes, max_px: int, fmt: str = "PNG") -> ContentBlock:
    """Encoded image bytes as one (resized) image block; a text note if they cannot be decoded."""
    try:
        data, mime = resize_image(data, max_px, fmt=fmt)
    except ValueError as exc:
        return text_block(f"[image could not be decoded: {exc}]")
    return ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime)


def pil_converted(img: Any, max_px: int) -> Converted:
    """A PIL image as one (resized) PNG image block."""
    data, mime = _encode_pil(_shrink_pil(img, max_px), "PNG")
    return Converted([ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime)])


def figure_converted(fig: Any, max_px: int) -> Converted:
    """A matplotlib figure rendered as PNG with its long side at most ``max_px``."""
    dpi = float(fig.get_dpi())
    width, height = fig.get_size_inches()
    longest = max(width, height) * dpi
    if longest > max_px:  # render at the target size instead of rendering big and shrinking
        dpi = dpi * max_px / longest
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return Converted([image_block(buf.getvalue(), max_px)])


def _module(value: Any) -> str:
    return type(value).__module__ or ""


def _is_figure(value: Any) -> bool:
    if not _module(value).startswith("matplotlib."):
        return False
    figure_mod = sys.modules.get("matplotlib.figure")
    return figure_mod is not None and isinstance(value, figure_mod.Figure)


def figure_of(value: Any) -> Any:
    """The Figure of a matplotlib Figure or Axes, else None. Imports nothing."""
    if _is_figure(value):
        return value
    if _module(value).startswith("matplotlib.") and _is_figure(getattr(value, "figure", None)):
        return value.figure
    return None


def is_pil_image(value: Any) -> bool:
    """True for a PIL image. Imports nothing."""
    if not _module(value).startswith("PIL."):
        return False
    image_mod = sys.modules.get("PIL.Image")
    return image_mod is not None and isinstance(value, image_mod.Image)
