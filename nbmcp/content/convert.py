"""One converter from Python values and Jupyter mime bundles to MCP content, plus the output budget.

Used for tool results, resource reads and kernel outputs alike:

- :func:`convert` — any Python value (text, JSON-able data, frames, figures, images, display-protocol
  objects, MCP content) -> :class:`Converted`;
- :func:`convert_mime_bundle` / :func:`convert_outputs` — Jupyter ``data`` bundles / nbformat outputs;
- :func:`error_converted` / :func:`exception_converted` — errors, with short ANSI-free tracebacks;
- :func:`apply_budget` — cap the text of one answer, keep head and tail, park the full text in an
  :class:`OutputStore` readable at ``nbmcp://outputs/{id}``.

Nothing here imports pandas, polars, matplotlib or numpy: objects are recognised by their module name,
and their library is already loaded when such an object exists.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import re
import secrets
import sys
import sysconfig
import threading
import traceback as _traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from mcp.types import (
    AudioContent,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
)

from .. import frames

__all__ = [
    "DEFAULT_IMAGE_MAX_PX",
    "DEFAULT_OUTPUT_BUDGET",
    "FRAME_MAX_COLUMNS",
    "MAX_IMAGES",
    "OUTPUT_URI_PREFIX",
    "Converted",
    "OutputStore",
    "apply_budget",
    "bounded_repr",
    "convert",
    "convert_mime_bundle",
    "convert_outputs",
    "error_converted",
    "exception_converted",
    "join_stream_text",
    "resize_image",
    "strip_ansi",
]

DEFAULT_IMAGE_MAX_PX = 1568
DEFAULT_OUTPUT_BUDGET = 20_000
MAX_IMAGES = 8
MAX_REPR_CHARS = 2_000
FRAME_HEAD_ROWS = 20
FRAME_MAX_COLUMNS = 40
STRUCTURED_CELL_CHARS = 1_000
TRACEBACK_LINES = 30
TRACEBACK_CHARS = 4_000
OUTPUT_URI_PREFIX = "nbmcp://outputs/"
_JPEG_FALLBACK_BYTES = 1_500_000

_CONTENT_TYPES = (TextContent, ImageContent, AudioContent, EmbeddedResource, ResourceLink)
_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass
class Converted:
    """MCP content for one value / output / call."""

    content: list[ContentBlock]
    structured: dict[str, Any] | None = None
    is_error: bool = False
    truncated: bool = False

    def to_result(self) -> CallToolResult:
        return CallToolResult(content=list(self.content), structured_content=self.structured, is_error=self.is_error)

    def text(self) -> str:
        """All text blocks joined with newlines."""
        return "\n".join(b.text for b in self.content if isinstance(b, TextContent))

    def extend(self, other: Converted) -> None:
        """Append ``other``'s content; errors and truncation are sticky; structured: first wins."""
        self.content.extend(other.content)
        self.is_error = self.is_error or other.is_error
        self.truncated = self.truncated or other.truncated
        if self.structured is None:
            self.structured = other.structured


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


def bounded_repr(value: Any, limit: int = MAX_REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (with a note); never raises."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"{object.__repr__(value)} (repr failed: {type(exc).__name__}: {exc})"
    if len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit} more characters]"
    return text


# --------------------------------------------------------------------------------------- images


def _image_mime(data: bytes) -> str | None:
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
    mime = Image.MIME.get(img.format or "", _image_mime(data) or "application/octet-stream")
    if max(img.size) <= max_px:
        return data, mime
    if img.format == "JPEG":
        img.draft("RGB", (max_px, max_px))  # decode at a reduced scale: fast for big photos
    img.load()
    return _encode_pil(_shrink_pil(img, max_px), fmt)


def _image_content(data: bytes, max_px: int, fmt: str = "PNG") -> ContentBlock:
    try:
        data, mime = resize_image(data, max_px, fmt=fmt)
    except ValueError as exc:
        return _text(f"[image could not be decoded: {exc}]")
    return ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime)


def _pil_converted(img: Any, max_px: int) -> Converted:
    data, mime = _encode_pil(_shrink_pil(img, max_px), "PNG")
    return Converted([ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime)])


def _figure_converted(fig: Any, max_px: int) -> Converted:
    dpi = float(fig.get_dpi())
    width, height = fig.get_size_inches()
    longest = max(width, height) * dpi
    if longest > max_px:  # render at the target size instead of rendering big and shrinking
        dpi = dpi * max_px / longest
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return Converted([_image_content(buf.getvalue(), max_px)])


# --------------------------------------------------------------------------------------- frames


def _frame_converted(obj: Any) -> Converted:
    rows, cols = frames.shape(obj)
    columns = frames.schema(obj)
    names = [c["name"] for c in columns]
    shown_names = names[:FRAME_MAX_COLUMNS]
    k = min(rows, FRAME_HEAD_ROWS)
    records = frames.page(obj, 0, k, shown_names if len(shown_names) < len(names) else None) if k else []
    note = f"{rows} rows x {cols} columns (showing first {k}"
    if len(shown_names) < len(names):
        note += f" rows and first {len(shown_names)} of {len(names)} columns"
    note += ")"
    structured: dict[str, Any] = {
        "kind": frames.frame_kind(obj),
        "columns": names,
        "dtypes": {c["name"]: c["dtype"] for c in columns},
        "rows": [{k_: _cap_cell(v) for k_, v in r.items()} for r in records],
        "total_rows": rows,
        "truncated": k < rows or len(shown_names) < len(names),
    }
    if len(shown_names) < len(names):
        structured["shown_columns"] = shown_names
    text = frames.markdown_table(records, shown_names) + "\n\n" + note
    return Converted([_text(text)], structured)


def _cap_cell(value: Any) -> Any:
    if isinstance(value, str) and len(value) > STRUCTURED_CELL_CHARS:
        return value[:STRUCTURED_CELL_CHARS] + "…"
    return value


# ------------------------------------------------------------------------------ kind recognition


def _module(value: Any) -> str:
    return type(value).__module__ or ""


def _is_figure(value: Any) -> bool:
    mod = _module(value)
    if not mod.startswith("matplotlib."):
        return False
    figure_mod = sys.modules.get("matplotlib.figure")
    return figure_mod is not None and isinstance(value, figure_mod.Figure)


def _figure_of(value: Any) -> Any:
    """The Figure of a matplotlib Figure or Axes, else None."""
    if _is_figure(value):
        return value
    if _module(value).startswith("matplotlib.") and _is_figure(getattr(value, "figure", None)):
        return value.figure
    return None


def _is_pil_image(value: Any) -> bool:
    if not _module(value).startswith("PIL."):
        return False
    image_mod = sys.modules.get("PIL.Image")
    return image_mod is not None and isinstance(value, image_mod.Image)


def _is_numpy(value: Any, kind: str) -> bool:
    mod = _module(value)
    if not (mod == "numpy" or mod.startswith("numpy.")):
        return False
    np = sys.modules.get("numpy")
    if np is None:
        return False
    return isinstance(value, np.ndarray if kind == "array" else np.generic)


def _is_content_list(value: Any) -> bool:
    return bool(value) and all(isinstance(v, _CONTENT_TYPES) for v in value)


_REPR_METHODS = (
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_html_", "text/html"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)


def _has_display_protocol(value: Any) -> bool:
    if isinstance(value, type) or hasattr(value, "_ipython_canary_method_should_not_exist_"):
        return False  # classes carry unbound methods; proxies answer every attribute (as IPython checks)
    return hasattr(value, "_repr_mimebundle_") or any(hasattr(value, m) for m, _ in _REPR_METHODS)


def _display_bundle(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    method = getattr(value, "_repr_mimebundle_", None)
    if callable(method):
        try:
            result = method(include=None, exclude=None)
        except TypeError:
            result = method()
        except Exception:
            result = None
        if isinstance(result, tuple) and len(result) == 2:
            result, meta = result
            if isinstance(meta, dict):
                metadata.update(meta)
        if isinstance(result, dict):
            data.update(result)
    for name, mime in _REPR_METHODS:
        if mime in data:
            continue
        method = getattr(value, name, None)
        if not callable(method):
            continue
        try:
            result = method()
        except Exception:
            continue
        if isinstance(result, tuple) and len(result) == 2:
            result, meta = result
            if isinstance(meta, dict):
                metadata[mime] = meta
        if result is not None:
            data[mime] = result
    data.setdefault("text/plain", bounded_repr(value))
    return data, metadata


def _is_rich(value: Any) -> bool:
    if isinstance(value, (*_CONTENT_TYPES, CallToolResult, Converted)):
        return True
    if isinstance(value, (bytes, bytearray)):
        return _image_mime(bytes(value[:12])) is not None
    if isinstance(value, (str, int, float, bool, dict, list, tuple)) or value is None:
        return False
    return (
        frames.as_frame(value) is not None
        or _figure_of(value) is not None
        or _is_pil_image(value)
        or _has_display_protocol(value)
    )


# ----------------------------------------------------------------------------------------- JSON


def _json_converted(value: Any) -> Converted:
    safe = frames.to_jsonable(value)
    text = json.dumps(safe, indent=2, ensure_ascii=False, default=str)
    structured = safe if isinstance(safe, dict) else {"result": safe}
    return Converted([_text(text)], structured)


def _model_data(value: Any) -> Any:
    """A pydantic model's or a dataclass instance's data, else a sentinel."""
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


_NOTHING = object()


# -------------------------------------------------------------------------------------- convert


def convert(value: Any, *, image_max_px: int = DEFAULT_IMAGE_MAX_PX) -> Converted:
    """Convert a Python value (a tool's return value, an exposed object) to MCP content.

    ``None`` -> no content; ``str`` -> text; dict/list/number/bool -> indented JSON text plus structured
    content (dicts as they are, others as ``{"result": value}``); frames and series -> a markdown table
    of the head plus structured rows; numpy arrays -> bounded repr with shape and dtype; matplotlib
    figures/axes, PIL images, PNG/JPEG/GIF/WebP bytes -> an image (long side ≤ ``image_max_px``);
    IPython display-protocol objects -> :func:`convert_mime_bundle`; MCP content blocks, lists of them and
    ``CallToolResult`` pass through unchanged; a list mixing rich values is converted item by item;
    anything else -> a repr of at most 2,000 characters.
    """
    if value is None:
        return Converted([])
    if isinstance(value, Converted):
        return value
    if isinstance(value, CallToolResult):
        return Converted(list(value.content), value.structured_content, bool(value.is_error))
    if isinstance(value, _CONTENT_TYPES):
        return Converted([value])
    if isinstance(value, str):
        return Converted([_text(value)])
    if isinstance(value, (bool, int, float)):
        return _json_converted(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if _image_mime(data[:12]):
            return Converted([_image_content(data, image_max_px)])
        return Converted([_text(bounded_repr(data))])
    if isinstance(value, (list, tuple)):
        if _is_content_list(value):
            return Converted(list(value))
        if any(_is_rich(v) for v in value):
            out = Converted([])
            for item in value:
                out.extend(convert(item, image_max_px=image_max_px))
            return out
        return _json_converted(value)
    if isinstance(value, (dict, Mapping)):
        return _json_converted(dict(value))
    frame = frames.as_frame(value)
    if frame is not None:
        return _frame_converted(frame)
    if _is_numpy(value, "array"):
        head = f"numpy.ndarray shape={tuple(value.shape)} dtype={value.dtype}"
        return Converted(
            [_text(head + "\n" + bounded_repr(value))],
            {"shape": list(value.shape), "dtype": str(value.dtype)},
        )
    if _is_numpy(value, "scalar"):
        return convert(frames.to_jsonable(value), image_max_px=image_max_px)
    fig = _figure_of(value)
    if fig is not None:
        return _figure_converted(fig, image_max_px)
    if _is_pil_image(value):
        return _pil_converted(value, image_max_px)
    data = _model_data(value)
    if data is not _NOTHING:
        return _json_converted(data)
    if _has_display_protocol(value):
        bundle, metadata = _display_bundle(value)
        return convert_mime_bundle(bundle, metadata, image_max_px=image_max_px)
    if isinstance(value, (set, frozenset)):
        return _json_converted(sorted(value, key=repr))
    return Converted([_text(bounded_repr(value))])


# ---------------------------------------------------------------------------------- mime bundles


def _bundle_text(value: Any) -> str:
    if isinstance(value, list):  # nbformat stores multi-line strings as lists of lines
        return "".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _bundle_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if _image_mime(raw[:12]):
            return raw
        value = raw.decode("ascii", "replace")
    try:
        return base64.b64decode(_bundle_text(value), validate=False)
    except (binascii.Error, ValueError):
        return None


class _TableParser(HTMLParser):
    """The first ``<table>`` of an HTML fragment: header rows, body rows, colspan/rowspan, and the
    ``<p>N rows x M columns</p>`` (with a multiplication sign) footer pandas adds to truncated frames."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.done = False
        self.in_head = False
        self.rows: list[tuple[bool, list[tuple[str, bool]]]] = []  # (in thead, [(text, is_th)])
        self.cell: list[str] | None = None
        self.cell_th = False
        self.spans: list[tuple[int, int]] = []  # per cell in current row: (colspan, rowspan)
        self.row_spans: list[list[tuple[int, int]]] = []
        self.after: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth != 1:
            return
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.rows.append((self.in_head, []))
            self.row_spans.append([])
        elif tag in ("td", "th") and self.rows:
            self.cell, self.cell_th = [], tag == "th"
            a = dict(attrs)
            self.row_spans[-1].append((_int_attr(a.get("colspan")), _int_attr(a.get("rowspan"))))
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
            self.done = self.depth == 0
        elif self.depth != 1:
            return
        elif tag == "thead":
            self.in_head = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append((" ".join("".join(self.cell).split()), self.cell_th))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        elif self.done:
            self.after.append(data)

    def grid(self) -> list[tuple[bool, list[tuple[str, bool]]]]:
        """Rows with colspan/rowspan expanded, so every row has one entry per column."""
        pending: dict[int, tuple[tuple[str, bool], int]] = {}
        out = []
        for (in_head, cells), spans in zip(self.rows, self.row_spans, strict=True):
            row: list[tuple[str, bool]] = []
            queue = list(zip(cells, spans, strict=True))
            col = 0
            while queue or col in pending:
                if col in pending:
                    cell, left = pending.pop(col)
                    row.append(cell)
                    if left > 1:
                        pending[col] = (cell, left - 1)
                    col += 1
                    continue
                cell, (colspan, rowspan) = queue.pop(0)
                for _ in range(colspan):
                    row.append(cell)
                    if rowspan > 1:
                        pending[col] = (cell, rowspan - 1)
                    col += 1
            out.append((in_head, row))
        return out


def _int_attr(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


_DEFAULT_REPR = re.compile(r"<[\w.]+ (object|at 0x[0-9a-fA-F]+)( at 0x[0-9a-fA-F]+)?>")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SHAPE_FOOTER = re.compile(r"([\d,]+)\s+rows\s*[\u00d7x]\s*([\d,]+)\s+columns")
_POLARS_SHAPE = re.compile(r"shape:\s*\((\d+),\s*(\d+)\)")


def _cell_value(text: str) -> Any:
    if text in ("", "NaN", "NaT", "None", "null", "<NA>", "nan"):
        return None
    if _NUMBER.fullmatch(text):
        try:
            return int(text)
        except ValueError:
            return float(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':  # polars quotes strings
        return text[1:-1]
    return text


def _html_table(html: str) -> Converted | None:
    """A markdown table plus structured rows from the first ``<table>`` in ``html``; None if none."""
    if "<table" not in html.lower():
        return None
    parser = _TableParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return None
    grid = parser.grid()
    if not grid:
        return None
    head = [cells for in_head, cells in grid if in_head]
    body = [cells for in_head, cells in grid if not in_head]
    dtypes: list[str] | None = None
    if head and all(not th for _, th in head[-1]) and len(head) > 1:  # polars: a row of dtypes (<td>)
        dtypes = [t for t, _ in head.pop()]
    if not head and body and all(th for _, th in body[0]):
        head = [body.pop(0)]
    width = max(len(r) for r in head + body)
    names: list[str] = []
    for i in range(width):
        parts = [r[i][0] for r in head if i < len(r) and r[i][0]]
        parts = [p for j, p in enumerate(parts) if j == 0 or p != parts[j - 1]]
        names.append("_".join(parts) or ("index" if i == 0 else f"column_{i}"))
    names = frames.unique_names(names)
    records = [{names[i]: _cell_value(t) for i, (t, _) in enumerate(r)} for r in body]
    data_rows = [r for r in records if not all(v in ("...", "…") for v in r.values())]
    after = " ".join(parser.after)
    total = None
    if m := _SHAPE_FOOTER.search(after) or _POLARS_SHAPE.search(html):
        total = int(m.group(1).replace(",", ""))
    shown = len(data_rows)
    structured: dict[str, Any] = {
        "columns": names,
        "rows": data_rows,  # the "..." row of a truncated display is only in the markdown
        "total_rows": total if total is not None else shown,
        "truncated": total is not None and total > shown,
    }
    if dtypes is not None and len(dtypes) == len(names):
        structured["dtypes"] = dict(zip(names, dtypes, strict=True))
    text = frames.markdown_table(records, names)
    if total is not None:
        text += f"\n\n{total} rows (showing {shown})"
    return Converted([_text(text)], structured)


class _TextOnly(HTMLParser):
    SKIP = ("script", "style")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "pre"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOnly()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return html
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


def _table_schema_converted(value: Any) -> Converted | None:
    """``application/vnd.dataresource+json`` (pandas' table schema output)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        return None
    fields = value.get("schema", {}).get("fields", [])
    names = [str(f.get("name")) for f in fields if isinstance(f, dict)]
    records = [r for r in value["data"] if isinstance(r, dict)]
    if not names and records:
        names = list(records[0])
    structured = {
        "columns": names,
        "dtypes": {str(f.get("name")): str(f.get("type")) for f in fields if isinstance(f, dict)},
        "rows": frames.to_jsonable(records[:FRAME_HEAD_ROWS]),
        "total_rows": len(records),
        "truncated": len(records) > FRAME_HEAD_ROWS,
    }
    text = frames.markdown_table(structured["rows"], names)
    return Converted([_text(text)], structured)


def convert_mime_bundle(
    data: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    *,
    image_max_px: int = DEFAULT_IMAGE_MAX_PX,
) -> Converted:
    """Convert one Jupyter output ``data`` bundle. Exactly one representation is sent, chosen in this
    order: an image (png, jpeg, gif, webp; base64 strings or raw bytes; resized); ``text/markdown``;
    ``application/json`` (JSON text + structured); a table (``application/vnd.dataresource+json`` or the
    first ``<table>`` in ``text/html``: markdown + structured rows); ``text/latex``; ``text/plain``
    (ANSI stripped); tag-stripped ``text/html``; SVG markup. An SVG alongside another representation
    adds a one-line note."""
    del metadata  # width/height hints are not needed: images are measured when decoded
    notes: list[str] = []
    if "image/svg+xml" in data and len(data) > 1:
        notes.append("[an SVG image was also produced; not shown]")

    def done(conv: Converted) -> Converted:
        if notes and not any(isinstance(b, ImageContent) for b in conv.content):
            conv.content.append(_text("\n".join(notes)))
        return conv

    for mime in _IMAGE_MIMES:
        if mime in data:
            raw = _bundle_bytes(data[mime])
            if raw:
                return Converted([_image_content(raw, image_max_px, "JPEG" if mime == "image/jpeg" else "PNG")])
    if "text/markdown" in data:
        return done(Converted([_text(_bundle_text(data["text/markdown"]))]))
    if "application/json" in data:
        value = data["application/json"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return done(Converted([_text(value)]))
        return done(_json_converted(value))
    if "application/vnd.dataresource+json" in data:
        conv = _table_schema_converted(data["application/vnd.dataresource+json"])
        if conv is not None:
            return done(conv)
    html = _bundle_text(data["text/html"]) if "text/html" in data else None
    if html is not None:
        conv = _html_table(html)
        if conv is not None:
            return done(conv)
    if "text/latex" in data:
        return done(Converted([_text(_bundle_text(data["text/latex"]))]))
    plain = strip_ansi(_bundle_text(data["text/plain"])) if "text/plain" in data else None
    if html is not None and (plain is None or _DEFAULT_REPR.fullmatch(plain.strip())):
        return done(Converted([_text(_html_text(html))]))
    if plain is not None:
        return done(Converted([_text(plain)]))
    if "image/svg+xml" in data:
        return Converted([_text(_bundle_text(data["image/svg+xml"]))])
    if data:
        return Converted([_text(f"[output with no text representation: {', '.join(sorted(data))}]")])
    return Converted([])


# --------------------------------------------------------------------------------------- streams


_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST (hyperlinks, titles)
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves, OSC hyperlinks)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def join_stream_text(chunks: Iterable[str]) -> str:
    """Join stream chunks as a terminal would show them: ANSI stripped, and a line rewritten with
    ``\\r`` (progress bars) keeps only its last state."""
    text = strip_ansi("".join(chunks))
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- errors


def _short_traceback(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    omitted = 0
    if len(lines) > TRACEBACK_LINES:
        omitted = len(lines) - TRACEBACK_LINES
        lines = lines[-TRACEBACK_LINES:]
    out = "\n".join(lines)
    if len(out) > TRACEBACK_CHARS:
        omitted_chars = len(out) - TRACEBACK_CHARS
        out = out[-TRACEBACK_CHARS:]
        out = out[out.find("\n") + 1 :] if "\n" in out[:200] else out
        return f"[... {omitted_chars} characters of traceback omitted ...]\n{out}"
    if omitted:
        return f"[... {omitted} lines of traceback omitted ...]\n{out}"
    return out


def error_converted(ename: str, evalue: str, traceback: list[str] | None) -> Converted:
    """A kernel ``error`` output (or any named error) as an MCP error: ``ename: evalue`` then the last
    ~30 lines / ~4,000 characters of the traceback, ANSI-free."""
    ename, evalue = strip_ansi(str(ename)), strip_ansi(str(evalue))
    tb = _short_traceback(strip_ansi("\n".join(traceback))) if traceback else ""
    header = f"{ename}: {evalue}" if evalue else ename
    text = header + ("\n\n" + tb if tb else "")
    return Converted([_text(text)], {"ename": ename, "evalue": evalue, "traceback": tb}, is_error=True)


_HIDDEN_RUNNER = ("runpy", "IPython.core.interactiveshell", "ipykernel")


def _stdlib_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(str(Path(path).resolve()))
    return tuple(dirs)


_STDLIB = _stdlib_dirs()


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(_STDLIB) and "site-packages" not in path and "dist-packages" not in path


def _hidden(module: str, hide_modules: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in hide_modules + _HIDDEN_RUNNER)


def exception_converted(
    exc: BaseException,
    *,
    hide_modules: tuple[str, ...] = (
        "nbmcp",
        "mcp",
        "anyio",
        "starlette",
        "uvicorn",
        "concurrent",
        "asyncio",
        "threading",
    ),
) -> Converted:
    """An exception raised by a user's tool as an MCP error: ``Type: message`` plus a short traceback of
    the user's frames. Frames of ``hide_modules`` (nbmcp, the SDK, the event loop, thread pools) and the
    stdlib frames that lead into the user's code are dropped; stdlib/library frames *below* the user's
    code stay (they say where the error was raised)."""
    kept = []
    seen_user = False
    for frame, lineno in _traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if _hidden(module, hide_modules):
            continue
        if not seen_user and _is_stdlib(frame.f_code.co_filename):
            continue
        seen_user = True
        kept.append((frame, lineno))
    ename = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", "__main__"):
        ename = f"{type(exc).__module__}.{ename}"
    evalue = str(exc)
    lines: list[str] = []
    if kept:
        stack = _traceback.StackSummary.extract(kept, capture_locals=False)
        lines = ["Traceback (most recent call last):\n", *stack.format()]
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        lines.append(f"(caused by {type(cause).__qualname__}: {cause})\n")
    tb = _short_traceback(strip_ansi("".join(lines))) if lines else ""
    header = f"{ename}: {evalue}" if evalue else ename
    text = header + ("\n\n" + tb if tb else "")
    return Converted([_text(text)], {"ename": ename, "evalue": evalue, "traceback": tb}, is_error=True)


# --------------------------------------------------------------------------------- output budget


class OutputStore:
    """Full outputs that were cut, for ``nbmcp://outputs/{id}``. Thread-safe; least recently used
    entries go first once there are more than ``max_entries`` or more than ``max_chars`` characters
    (the newest entry always stays)."""

    def __init__(self, max_entries: int = 64, max_chars: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._items: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def put(self, text: str) -> str:
        """Keep ``text``; return its id (12 hex digits)."""
        output_id = secrets.token_hex(6)
        with self._lock:
            self._items[output_id] = text
            self._chars += len(text)
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self._chars > self.max_chars):
                _, old = self._items.popitem(last=False)
                self._chars -= len(old)
        return output_id

    def get(self, output_id: str) -> str:
        """The text kept under ``output_id``; ``KeyError`` naming the known ids if it is gone."""
        with self._lock:
            try:
                self._items.move_to_end(output_id)
                return self._items[output_id]
            except KeyError:
                known = list(self._items)
        raise KeyError(f"no output {output_id!r} (expired or never stored); known ids: {known}")

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @staticmethod
    def uri(output_id: str) -> str:
        return OUTPUT_URI_PREFIX + output_id


def _snap_head(text: str, end: int) -> int:
    """Move a head cut back to a line end if one is near."""
    nl = text.rfind("\n", max(0, end - 200), end)
    return nl + 1 if nl >= 0 else end


def _snap_tail(text: str, start: int) -> int:
    """Move a tail cut forward to a line start if one is near."""
    nl = text.find("\n", start, start + 200)
    return nl + 1 if nl >= 0 else start


def apply_budget(
    converted: Converted, budget: int = DEFAULT_OUTPUT_BUDGET, store: OutputStore | None = None
) -> Converted:
    """Cap ``converted`` to ``budget`` characters of text (all text blocks together) and
    :data:`MAX_IMAGES` images.

    Over budget: the first ~60% and last ~40% of the budget are kept, a line
    ``[... N characters cut; full output: nbmcp://outputs/<id> ...]`` marks the cut (the full text goes
    to ``store`` when given), ``truncated`` is set, and ``structured["truncated"] = True`` (structured
    content is created if there was none). Structured content whose JSON alone exceeds the budget is
    replaced by a stub that points to its full JSON in ``store``. Under budget and within the image cap,
    ``converted`` is returned unchanged (the same object).
    """
    texts = [b.text for b in converted.content if isinstance(b, TextContent)]
    total = sum(len(t) for t in texts)
    n_images = sum(1 for b in converted.content if isinstance(b, (ImageContent, AudioContent)))
    structured_json = None
    if converted.structured is not None:
        structured_json = json.dumps(converted.structured, ensure_ascii=False, default=str)
        if len(structured_json) <= budget:
            structured_json = None
    if total <= budget and n_images <= MAX_IMAGES and structured_json is None:
        return converted

    output_uri = None
    content: list[ContentBlock] = []
    if total > budget:
        if store is not None:
            output_uri = OutputStore.uri(store.put("\n".join(texts)))
        head_end = int(budget * 0.6)
        tail_start = total - (budget - head_end)
        pos = 0
        note_at = -1
        pieces: list[tuple[ContentBlock, str, str]] = []  # (block, head, tail) of every block
        for block in converted.content:
            if not isinstance(block, TextContent):
                pieces.append((block, "", ""))
                continue
            text, start = block.text, pos
            pos += len(text)
            head = text[: max(0, min(pos, head_end) - start)]
            if 0 < len(head) < len(text):
                head = head[: _snap_head(text, len(head))]
            tail = text[max(0, tail_start - start) :] if pos > tail_start else ""
            if tail and len(tail) < len(text):
                tail = text[_snap_tail(text, len(text) - len(tail)) :]
            if note_at < 0 and pos > head_end:
                note_at = len(pieces)
            pieces.append((block, head, tail))
        cut = total - sum(len(h) + len(t) for _, h, t in pieces)
        where = f"; full output: {output_uri}" if output_uri else ""
        note = f"\n[... {cut} characters cut{where} ...]\n"
        for i, (block, head, tail) in enumerate(pieces):
            if not isinstance(block, TextContent):
                content.append(block)
                continue
            piece = head + (note if i == note_at else "") + tail
            if piece:
                content.append(block.model_copy(update={"text": piece}))
    else:
        content = list(converted.content)

    if n_images > MAX_IMAGES:
        kept_images = 0
        capped: list[ContentBlock] = []
        for block in content:
            if isinstance(block, (ImageContent, AudioContent)):
                kept_images += 1
                if kept_images > MAX_IMAGES:
                    continue
            capped.append(block)
        capped.append(_text(f"[{n_images - MAX_IMAGES} more images not shown (at most {MAX_IMAGES})]"))
        content = capped

    structured = converted.structured
    if structured_json is not None:
        stub_uri = output_uri
        if store is not None and total <= budget:
            stub_uri = OutputStore.uri(store.put(structured_json))
        structured = {
            "truncated": True,
            "structured_chars": len(structured_json),
            "note": "structured content exceeded the output budget",
        }
        if stub_uri:
            structured["output_uri"] = stub_uri
    elif total > budget:
        if structured is None:
            structured = {"truncated": True, "total_chars": total}
            if output_uri:
                structured["output_uri"] = output_uri
        else:
            structured = {**structured, "truncated": True}
            if output_uri:
                structured.setdefault("output_uri", output_uri)
    return Converted(
        content,
        structured,
        is_error=converted.is_error,
        truncated=converted.truncated or total > budget or n_images > MAX_IMAGES or structured_json is not None,
    )


# --------------------------------------------------------------------------------------- outputs


def convert_outputs(outputs: Iterable[Mapping[str, Any]], *, image_max_px: int = DEFAULT_IMAGE_MAX_PX) -> Converted:
    """nbformat-style outputs (``stream``, ``display_data``, ``execute_result``, ``error``) of one
    execution as one :class:`Converted`, in order. Consecutive stream chunks of the same stream are
    joined (:func:`join_stream_text`); ``is_error`` is set by an ``error`` output; structured content is
    that of the last ``execute_result`` or error, if any."""
    out = Converted([])
    pending: tuple[str, list[str]] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            name, chunks = pending
            text = join_stream_text(chunks)
            if text:
                out.content.append(_text(text if name == "stdout" else f"[{name}]\n{text}"))
            pending = None

    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            name = str(output.get("name", "stdout"))
            text = _bundle_text(output.get("text", ""))
            if pending is not None and pending[0] == name:
                pending[1].append(text)
            else:
                flush()
                pending = (name, [text])
            continue
        flush()
        if kind in ("display_data", "execute_result", "update_display_data"):
            conv = convert_mime_bundle(
                dict(output.get("data") or {}), dict(output.get("metadata") or {}), image_max_px=image_max_px
            )
            out.content.extend(conv.content)
            if kind == "execute_result" and conv.structured is not None:
                out.structured = conv.structured
        elif kind == "error":
            conv = error_converted(
                str(output.get("ename", "Error")), str(output.get("evalue", "")), output.get("traceback")
            )
            out.content.extend(conv.content)
            out.structured = conv.structured
            out.is_error = True
    flush()
    return out
