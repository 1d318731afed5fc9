"""Jupyter outputs -> MCP content: one mime bundle (``display_data`` / ``execute_result`` data), or all the
nbformat outputs of one execution (streams, displays, results, errors) in order.

A bundle holds several representations of one value; exactly one is sent (an assistant needs the plot
once, not as PNG, SVG and ``<Figure size ...>``), the most useful one first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from html import unescape as unescape_entities
from html.parser import HTMLParser
from typing import Any

from mcp.types import ImageContent

from .converted import Converted, json_converted, text_block
from .images import DEFAULT_IMAGE_MAX_PX, IMAGE_MIMES, image_block, image_mime
from .tables import html_table_converted, table_schema_converted
from .terminal import join_stream_text, strip_ansi
from .tracebacks import error_converted

__all__ = ["convert_mime_bundle", "convert_outputs"]

# Python's default repr (``<pkg.Cls object at 0x...>``, IPython's ``<pkg.Cls at 0x...>``) says nothing
_DEFAULT_REPR = re.compile(r"<[\w.]+ (object|at 0x[0-9a-fA-F]+)( at 0x[0-9a-fA-F]+)?>")


def _bundle_text(value: Any) -> str:
    if isinstance(value, list):  # nbformat stores multi-line strings as lists of lines
        return "".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _bundle_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if image_mime(raw[:12]):
            return raw
        value = raw.decode("ascii", "replace")
    try:
        return base64.b64decode(_bundle_text(value), validate=False)
    except (binascii.Error, ValueError):
        return None


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


# code spans and fenced blocks show entities literally; everywhere else markdown renders them
_MARKDOWN_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _markdown_text(markdown: str) -> str:
    """Markdown as it reads rendered: HTML entities decoded and HTML comments dropped outside code. IRkernel's
    tables escape the column types (``| x &lt;int&gt; |``) and head their row-names column ``<!--/-->``; a
    model should read ``| | x <int> |`` as a person does."""
    if "&" not in markdown and "<!--" not in markdown:
        return markdown
    parts = _MARKDOWN_CODE.split(markdown)
    return "".join(part if i % 2 else unescape_entities(_HTML_COMMENT.sub("", part)) for i, part in enumerate(parts))


def _html_text(html: str) -> str:
    parser = _TextOnly()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return html
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


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
            conv.content.append(text_block("\n".join(notes)))
        return conv

    for mime in IMAGE_MIMES:
        if mime in data:
            raw = _bundle_bytes(data[mime])
            if raw:
                return Converted([image_block(raw, image_max_px, "JPEG" if mime == "image/jpeg" else "PNG")])
    if "text/markdown" in data:
        return done(Converted([text_block(_markdown_text(_bundle_text(data["text/markdown"])))]))
    if "application/json" in data:
        value = data["application/json"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return done(Converted([text_block(value)]))
        return done(json_converted(value))
    if "application/vnd.dataresource+json" in data:
        conv = table_schema_converted(data["application/vnd.dataresource+json"])
        if conv is not None:
            return done(conv)
    html = _bundle_text(data["text/html"]) if "text/html" in data else None
    if html is not None:
        conv = html_table_converted(html)
        if conv is not None:
            return done(conv)
    if "text/latex" in data:
        return done(Converted([text_block(_bundle_text(data["text/latex"]))]))
    plain = strip_ansi(_bundle_text(data["text/plain"])) if "text/plain" in data else None
    if html is not None and (plain is None or _DEFAULT_REPR.fullmatch(plain.strip())):
        return done(Converted([text_block(_html_text(html))]))
    if plain is not None:
        return done(Converted([text_block(plain)]))
    if "image/svg+xml" in data:
        return Converted([text_block(_bundle_text(data["image/svg+xml"]))])
    if data:
        return Converted([text_block(f"[output with no text representation: {', '.join(sorted(data))}]")])
    return Converted([])


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
                out.content.append(text_block(text if name == "stdout" else f"[{name}]\n{text}"))
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
