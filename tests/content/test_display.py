"""nbmcp.content.display: display-protocol objects and cell values through IPython's display formatter."""

from __future__ import annotations

import subprocess
import sys
import types

import IPython
import pandas as pd
from IPython.display import HTML, Markdown
from IPython.display import Image as IPyImage
from mcp.types import ImageContent
from PIL import Image

from nbmcp.content import convert, convert_display
from tests.content.conftest import decoded_image, only_text, png_bytes


def test_ipython_display_objects():
    assert only_text(convert(Markdown("# Title"))) == "# Title"
    assert only_text(convert(HTML("<p>Hello <b>there</b></p>"))) == "Hello there"
    block = convert(IPyImage(data=png_bytes(3000, 1000))).content[0]
    assert isinstance(block, ImageContent) and decoded_image(block).size == (1568, 523)


def test_repr_mimebundle_and_repr_methods():
    class Rich:
        def _repr_mimebundle_(self, include=None, exclude=None):
            return {"text/markdown": "**rich**", "text/plain": "Rich()"}

    class HtmlTable:
        def _repr_html_(self):
            return "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>"

    assert only_text(convert(Rich())) == "**rich**"
    conv = convert(HtmlTable())
    assert only_text(conv) == "| k | v |\n| --- | --- |\n| a | 1 |"
    assert conv.structured["rows"] == [{"k": "a", "v": 1}]


class HtmlOnly:
    def _repr_html_(self):
        return "<b>instance</b>"


class SelfDisplay:
    calls: list[str] = []

    def _ipython_display_(self):
        type(self).calls.append("displayed")

    def _repr_html_(self):
        return "<i>html</i>"


def test_repr_png_and_what_is_not_a_display_object():
    class Png:
        def _repr_png_(self):
            return png_bytes(30, 20)

    block = convert(Png()).content[0]
    assert isinstance(block, ImageContent) and decoded_image(block).size == (30, 20)

    class Proxy:  # answers every attribute, as remote-object proxies do: not a display object
        def __getattr__(self, name):
            return lambda *args, **kwargs: "<b>proxy</b>"

        def __repr__(self) -> str:
            return "Proxy()"

    assert only_text(convert(Proxy())) == "Proxy()"

    assert only_text(convert(HtmlOnly)).startswith("<class ")  # a class carries unbound methods: a repr
    assert only_text(convert(HtmlOnly())) == "instance"


def test_objects_that_display_themselves_are_not_asked_to():
    SelfDisplay.calls = []
    assert only_text(convert(SelfDisplay())) == "html"
    assert only_text(convert_display(SelfDisplay())) == "html"
    assert SelfDisplay.calls == []  # a conversion never publishes into the notebook


def test_the_running_shells_registered_formatters_are_honoured(monkeypatch):
    from IPython.core.formatters import DisplayFormatter

    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    shell = types.SimpleNamespace(display_formatter=DisplayFormatter())
    shell.display_formatter.formatters["text/markdown"].for_type(Point, lambda p: f"**Point** {p.x}, {p.y}")
    shell.display_formatter.formatters["text/plain"].for_type(Point, lambda p, printer, cycle: printer.text("P"))
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert only_text(convert(Point(1, 2))) == "**Point** 1, 2"
    assert only_text(convert_display(Point(1, 2))) == "**Point** 1, 2"
    shell.display_formatter.formatters["text/markdown"].pop(Point)
    assert only_text(convert_display(Point(1, 2))) == "P"  # registered later or removed: seen at once


def test_convert_display_shows_what_a_notebook_cell_shows():
    assert only_text(convert_display((5, 2))) == "(5, 2)"  # the kernel's text/plain, as `nbmcp serve` shows it
    assert convert((5, 2)).structured == {"result": [5, 2]}  # convert() keeps data as data
    assert only_text(convert_display("text")) == "'text'"
    assert convert_display(None).content == []
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    conv = convert_display(df)
    assert only_text(conv).split("\n")[:3] == ["| index | city | temp |", "| --- | --- | --- |", "| 0 | Oslo | 3.5 |"]
    assert conv.structured["rows"] == [
        {"index": 0, "city": "Oslo", "temp": 3.5},
        {"index": 1, "city": "Lima", "temp": 19.0},
    ]
    assert conv.structured["total_rows"] == 2
    block = convert_display(Image.new("RGB", (3000, 1000)), image_max_px=300).content[0]
    assert isinstance(block, ImageContent) and decoded_image(block).size == (300, 100)


def test_convert_display_survives_a_failing_repr():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "repr failed: RuntimeError: no repr" in only_text(convert_display(Broken()))


def test_importing_content_does_not_import_ipython():
    code = "import sys, nbmcp.content; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
