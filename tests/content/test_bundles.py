"""nbmcp.content.bundles: Jupyter mime bundles and nbformat outputs -> one representation each."""

from __future__ import annotations

import base64
import json

from nbmcp import content
from nbmcp.content import convert_mime_bundle
from tests.content.conftest import only_text, png_bytes


def test_markdown_preferred_over_html():
    conv = convert_mime_bundle(
        {"text/markdown": "| a |\n|---|\n| 1 |", "text/html": "<table><tr><td>1</td></tr></table>"}
    )
    assert only_text(conv) == "| a |\n|---|\n| 1 |"


def test_markdown_entities_are_decoded_outside_code():
    # IRkernel's data.frame markdown, as the kernel sends it
    irkernel = (
        "A data.frame: 2 \u00d7 2\n\n| <!--/--> | x &lt;int&gt; | y &lt;chr&gt; |\n|---|---|---|\n"
        "| 1 | 1 | &lt;NA&gt; |\n"
    )
    conv = convert_mime_bundle({"text/markdown": irkernel + "\n`a &amp; b` and\n```\n&lt;kept&gt;\n```"})
    text = only_text(conv)
    assert "|  | x <int> | y <chr> |" in text and "| 1 | 1 | <NA> |" in text and "&lt;" not in text.split("`")[0]
    assert "`a &amp; b`" in text and "```\n&lt;kept&gt;\n```" in text  # code shows entities as written


def test_json_bundle():
    conv = convert_mime_bundle({"application/json": {"k": [1, 2]}, "text/plain": "{'k': [1, 2]}"})
    assert json.loads(only_text(conv)) == {"k": [1, 2]}
    assert conv.structured == {"k": [1, 2]}


def test_svg_bundle():
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>'
    assert only_text(convert_mime_bundle({"image/svg+xml": svg})) == svg
    conv = convert_mime_bundle({"image/svg+xml": svg, "text/plain": "<Circle>"})
    assert [b.text for b in conv.content] == ["<Circle>", "[an SVG image was also produced; not shown]"]


def test_plain_text_bundle_strips_ansi_and_default_repr_loses_to_html():
    assert only_text(convert_mime_bundle({"text/plain": "\x1b[31mred\x1b[0m"})) == "red"
    conv = convert_mime_bundle({"text/html": "<b>bold</b> text", "text/plain": "<IPython.core.display.HTML object>"})
    assert only_text(conv) == "bold text"


def test_convert_outputs():
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "hello "},
        {"output_type": "stream", "name": "stdout", "text": "world\n"},
        {"output_type": "stream", "name": "stderr", "text": "warn\n"},
        {"output_type": "display_data", "data": {"image/png": base64.b64encode(png_bytes(10, 10)).decode()}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "execution_count": 1},
        {"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": ["\x1b[31mNameError\x1b[0m"]},
    ]
    conv = content.convert_outputs(outputs)
    kinds = [type(b).__name__ for b in conv.content]
    assert kinds == ["TextContent", "TextContent", "ImageContent", "TextContent", "TextContent"]
    assert conv.content[0].text == "hello world\n"
    assert conv.content[1].text == "[stderr]\nwarn\n"
    assert conv.content[3].text == "42"
    assert conv.content[4].text.startswith("NameError: x")
    assert conv.is_error and conv.structured["ename"] == "NameError"
