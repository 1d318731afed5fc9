"""Any Python value (a tool's return value, an exposed object) -> MCP content: :func:`convert`.

Each kind of value goes to the converter that knows it best: JSON data stays data (text plus structured
content), frames become tables, figures and images become images, display-protocol objects go through
IPython's display formatter, MCP content passes through. Nothing here imports pandas, polars, matplotlib
or numpy: objects are recognised by their module name, and their library is already loaded when such an
object exists.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from mcp.types import CallToolResult

from .. import frames
from .bundles import convert_mime_bundle
from .converted import CONTENT_TYPES, Converted, bounded_repr, json_converted, text_block
from .display import display_data
from .images import (
    DEFAULT_IMAGE_MAX_PX,
    figure_converted,
    figure_of,
    image_block,
    image_mime,
    is_pil_image,
    pil_converted,
)
from .tables import frame_converted

__all__ = ["convert"]


def _is_numpy(value: Any, kind: str) -> bool:
    mod = type(value).__module__ or ""
    if not (mod == "numpy" or mod.startswith("numpy.")):
        return False
    np = sys.modules.get("numpy")
    if np is None:
        return False
    return isinstance(value, np.ndarray if kind == "array" else np.generic)


def _is_content_list(value: Any) -> bool:
    return bool(value) and all(isinstance(v, CONTENT_TYPES) for v in value)


def _is_rich(value: Any) -> bool:
    """Whether a list item needs its own conversion (a list of plain data is converted as JSON)."""
    if isinstance(value, (*CONTENT_TYPES, CallToolResult, Converted)):
        return True
    if isinstance(value, (bytes, bytearray)):
        return image_mime(bytes(value[:12])) is not None
    if isinstance(value, (str, int, float, bool, dict, list, tuple)) or value is None:
        return False
    return (
        frames.as_frame(value) is not None
        or figure_of(value) is not None
        or is_pil_image(value)
        or bool(display_data(value, include_plain=False)[0])
    )


_NOTHING = object()


def _model_data(value: Any) -> Any:
    """A pydantic model's or a dataclass instance's data, else :data:`_NOTHING`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return dataclasses.asdict(value)
        except Exception:
            return _NOTHING
    dump = getattr(value, "model_dump", None)
    if callable(dump) and "pydantic" in sys.modules:
        from pydantic import BaseModel

        if isinstance(value, BaseModel):
            try:
                return dump(mode="json")
            except Exception:
                return _NOTHING
    return _NOTHING


def convert(value: Any, *, image_max_px: int = DEFAULT_IMAGE_MAX_PX) -> Converted:
    """Convert a Python value (a tool's return value, an exposed object) to MCP content.

    ``None`` -> no content; ``str`` -> text; dict/list/number/bool -> indented JSON text plus structured
    content (dicts as they are, others as ``{"result": value}``); frames and series -> a markdown table
    of the head plus structured rows; numpy arrays -> bounded repr with shape and dtype; matplotlib
    figures/axes, PIL images, PNG/JPEG/GIF/WebP bytes -> an image (long side ≤ ``image_max_px``);
    objects with a rich display (IPython's display formatter: ``_repr_html_``, ``_repr_png_``,
    ``_repr_mimebundle_``, registered formatters) -> :func:`convert_mime_bundle`; MCP content blocks, lists
    of them and ``CallToolResult`` pass through unchanged; a list mixing rich values is converted item by
    item; anything else -> a repr of at most 2,000 characters.
    """
    if value is None:
        return Converted([])
    if isinstance(value, Converted):
        return value
    if isinstance(value, CallToolResult):
        return Converted(list(value.content), value.structured_content, bool(value.is_error))
    if isinstance(value, CONTENT_TYPES):
        return Converted([value])
    if isinstance(value, str):
        return Converted([text_block(value)])
    if isinstance(value, (bool, int, float)):
        return json_converted(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if image_mime(data[:12]):
            return Converted([image_block(data, image_max_px)])
        return Converted([text_block(bounded_repr(data))])
    if isinstance(value, (list, tuple)):
        if _is_content_list(value):
            return Converted(list(value))
        if any(_is_rich(v) for v in value):
            out = Converted([])
            for item in value:
                out.extend(convert(item, image_max_px=image_max_px))
            return out
        return json_converted(value)
    if isinstance(value, (dict, Mapping)):
        return json_converted(dict(value))
    frame = frames.as_frame(value)
    if frame is not None:
        return frame_converted(frame)
    if _is_numpy(value, "array"):
        head = f"numpy.ndarray shape={tuple(value.shape)} dtype={value.dtype}"
        return Converted(
            [text_block(head + "\n" + bounded_repr(value))],
            {"shape": list(value.shape), "dtype": str(value.dtype)},
        )
    if _is_numpy(value, "scalar"):
        return convert(frames.to_jsonable(value), image_max_px=image_max_px)
    fig = figure_of(value)
    if fig is not None:
        return figure_converted(fig, image_max_px)
    if is_pil_image(value):
        return pil_converted(value, image_max_px)
    model = _model_data(value)
    if model is not _NOTHING:
        return json_converted(model)
    # text/plain is left out: a pretty-printer is not run on every unknown object (nor can it print a
    # traceback into the user's notebook when a repr fails); a rich object gets the bounded repr instead
    bundle, metadata = display_data(value, include_plain=False)
    if bundle:
        bundle["text/plain"] = bounded_repr(value)
        return convert_mime_bundle(bundle, metadata, image_max_px=image_max_px)
    if isinstance(value, (set, frozenset)):
        return json_converted(sorted(value, key=repr))
    return Converted([text_block(bounded_repr(value))])
