"""nbmcp.values: Python values and Jupyter mime bundles -> MCP content, errors, the output budget."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pydantic
import pytest
from IPython.display import HTML, Markdown
from IPython.display import Image as IPyImage
from mcp.types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from PIL import Image

from nbmcp import content as values
from nbmcp.content import Converted, OutputStore, apply_budget, convert, convert_mime_bundle


def _png(width: int, height: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def _decoded(block: ImageContent) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


def _only_text(conv: Converted) -> str:
    assert len(conv.content) == 1 and isinstance(conv.content[0], TextContent), conv.content
    return conv.content[0].text


# ------------------------------------------------------------------------------------ basics


def test_none_gives_no_content():
    conv = convert(None)
    assert conv.content == [] and conv.structured is None and not conv.is_error


def test_str_is_text():
    assert _only_text(convert("héllo\nworld")) == "héllo\nworld"
    assert convert("x").structured is None


def test_dict_is_json_text_and_structured():
    value = {"a": 1, "b": [1, 2], "when": pd.Timestamp("2024-01-02"), "n": np.int64(5), "x": float("nan")}
    conv = convert(value)
    text = _only_text(conv)
    assert json.loads(text) == {"a": 1, "b": [1, 2], "when": "2024-01-02T00:00:00", "n": 5, "x": None}
    assert text.startswith("{\n  ")  # indent=2
    assert conv.structured == json.loads(text)
    json.dumps(conv.structured, allow_nan=False)


@pytest.mark.parametrize("value", [[1, "a", None], (1, 2), 3, 2.5, True])
def test_other_json_values_are_wrapped(value):
    conv = convert(value)
    expected = list(value) if isinstance(value, tuple) else value
    assert json.loads(_only_text(conv)) == expected
    assert conv.structured == {"result": expected}


def test_dataclass_and_pydantic_are_json():
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Model(pydantic.BaseModel):
        name: str
        tags: list[str]

    assert convert(Point(1, 2)).structured == {"x": 1, "y": 2}
    assert convert(Model(name="n", tags=["a"])).structured == {"name": "n", "tags": ["a"]}


def test_unknown_object_is_bounded_repr():
    class Huge:
        def __repr__(self) -> str:
            return "H" * 10_000

    text = _only_text(convert(Huge()))
    assert text.startswith("H" * 100)
    assert len(text) < 2_100 and "8000 more characters" in text

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "repr failed: RuntimeError: no repr" in _only_text(convert(Broken()))


def test_numpy_array_and_scalar():
    conv = convert(np.arange(100_000).reshape(1000, 100))
    text = _only_text(conv)
    assert text.startswith("numpy.ndarray shape=(1000, 100) dtype=int64")
    assert len(text) < 2_200
    assert conv.structured == {"shape": [1000, 100], "dtype": "int64"}
    assert convert(np.int64(7)).structured == {"result": 7}


# ------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("lib", ["pandas", "polars", "pyarrow"])
def test_frame_is_markdown_head_and_structured(lib):
    data = {"n": list(range(100)), "s": [f"v|{i}" for i in range(100)]}
    obj = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[lib](data)
    conv = convert(obj)
    text = _only_text(conv)
    lines = text.split("\n")
    assert lines[0] == "| n | s |"
    assert lines[2] == "| 0 | v\\|0 |"
    assert lines[21] == "| 19 | v\\|19 |"  # 20 rows
    assert lines[-1] == "100 rows x 2 columns (showing first 20)"
    s = conv.structured
    assert s["columns"] == ["n", "s"]
    assert s["dtypes"] == {"n": "Int64", "s": "String"}
    assert s["rows"][:2] == [{"n": 0, "s": "v|0"}, {"n": 1, "s": "v|1"}]
    assert len(s["rows"]) == 20
    assert s["total_rows"] == 100 and s["truncated"] is True
    small = convert(obj[:3] if lib != "pyarrow" else obj.slice(0, 3))
    assert small.structured["truncated"] is False
    assert small.content[0].text.endswith("3 rows x 2 columns (showing first 3)")


def test_wide_frame_shows_first_columns():
    df = pd.DataFrame({f"c{i}": [i] for i in range(100)})
    conv = convert(df)
    assert conv.content[0].text.split("\n")[0].count("|") == values.FRAME_MAX_COLUMNS + 1
    assert "first 40 of 100 columns" in conv.content[0].text
    assert len(conv.structured["columns"]) == 100
    assert list(conv.structured["rows"][0]) == conv.structured["shown_columns"]


def test_empty_frame():
    conv = convert(pd.DataFrame({"a": []}))
    assert _only_text(conv) == "| a |\n| --- |\n\n0 rows x 1 columns (showing first 0)"
    assert conv.structured["rows"] == [] and conv.structured["total_rows"] == 0


def test_pandas_series_is_one_column_frame():
    conv = convert(pd.Series([3, 4], name="qty"))
    assert conv.structured["columns"] == ["qty"]
    assert conv.structured["rows"] == [{"qty": 3}, {"qty": 4}]
    counts = convert(pd.Series(["a", "b", "a"]).value_counts())
    assert counts.structured["rows"][0] == {"index": "a", "count": 2}


# ------------------------------------------------------------------------------------- images


def test_big_matplotlib_figure_is_resized_png():
    fig = plt.figure(figsize=(40, 30), dpi=100)  # 4000 x 3000 px
    fig.gca().plot([1, 2, 3], [3, 1, 2])
    try:
        conv = convert(fig)
        assert len(conv.content) == 1
        block = conv.content[0]
        assert isinstance(block, ImageContent) and block.mime_type == "image/png"
        img = _decoded(block)
        assert img.format == "PNG"
        assert max(img.size) <= values.DEFAULT_IMAGE_MAX_PX
        assert max(img.size) > 800  # downscaled, not thumbnailed to nothing
        # an Axes converts to its figure, and the limit is configurable
        small = _decoded(convert(fig.gca(), image_max_px=300).content[0])
        assert max(small.size) <= 300
    finally:
        plt.close(fig)


def test_big_pil_image_is_resized_keeping_aspect():
    conv = convert(Image.new("RGB", (4000, 3000), "blue"))
    block = conv.content[0]
    assert isinstance(block, ImageContent) and block.mime_type == "image/png"
    img = _decoded(block)
    assert img.size == (1568, 1176)
    assert img.getpixel((10, 10)) == (0, 0, 255)


def test_image_bytes_are_images():
    small = _png(20, 10)
    block = convert(small).content[0]
    assert isinstance(block, ImageContent) and block.mime_type == "image/png"
    assert base64.b64decode(block.data) == small  # small images are untouched
    buf = io.BytesIO()
    Image.new("RGB", (3000, 100), "green").save(buf, format="JPEG")
    block = convert(buf.getvalue()).content[0]
    assert isinstance(block, ImageContent)
    assert max(_decoded(block).size) == 1568
    assert _only_text(convert(b"not an image")) == "b'not an image'"


def test_resize_image():
    data, mime = values.resize_image(_png(100, 50), 200)
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (100, 50)
    data, mime = values.resize_image(_png(1000, 500), 200)
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (200, 100)
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000)).save(buf, format="JPEG")
    data, mime = values.resize_image(buf.getvalue(), 500, fmt="JPEG")
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (500, 250)
    with pytest.raises(ValueError, match="not a decodable image"):
        values.resize_image(b"\x89PNG\r\n\x1a\ngarbage", 100)


# ------------------------------------------------------------------------- display protocol


def test_ipython_display_objects():
    assert _only_text(convert(Markdown("# Title"))) == "# Title"
    assert _only_text(convert(HTML("<p>Hello <b>there</b></p>"))) == "Hello there"
    block = convert(IPyImage(data=_png(3000, 1000))).content[0]
    assert isinstance(block, ImageContent) and _decoded(block).size == (1568, 523)


def test_repr_mimebundle_and_repr_methods():
    class Rich:
        def _repr_mimebundle_(self, include=None, exclude=None):
            return {"text/markdown": "**rich**", "text/plain": "Rich()"}

    class HtmlTable:
        def _repr_html_(self):
            return "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>"

    assert _only_text(convert(Rich())) == "**rich**"
    conv = convert(HtmlTable())
    assert _only_text(conv) == "| k | v |\n| --- | --- |\n| a | 1 |"
    assert conv.structured["rows"] == [{"k": "a", "v": 1}]


# -------------------------------------------------------------------------------- pass-through


def test_mcp_content_passes_through():
    text = TextContent(type="text", text="t")
    image = ImageContent(type="image", data="aGk=", mime_type="image/png")
    audio = AudioContent(type="audio", data="aGk=", mime_type="audio/wav")
    link = ResourceLink(type="resource_link", name="r", uri="nbmcp://objects/x")
    embedded = EmbeddedResource(type="resource", resource=TextResourceContents(uri="a://b", text="body"))
    for block in (text, image, audio, link, embedded):
        conv = convert(block)
        assert conv.content == [block] and conv.content[0] is block
    blocks = [text, image, link]
    conv = convert(blocks)
    assert conv.content == blocks and all(a is b for a, b in zip(conv.content, blocks, strict=True))
    assert conv.structured is None


def test_call_tool_result_passes_through():
    result = CallToolResult(
        content=[TextContent(type="text", text="done")], structured_content={"ok": True}, is_error=True
    )
    conv = convert(result)
    assert conv.content == result.content and conv.structured == {"ok": True} and conv.is_error
    back = conv.to_result()
    assert isinstance(back, CallToolResult)
    assert back.content == result.content and back.structured_content == {"ok": True} and back.is_error


def test_mixed_list_converts_each_item():
    fig = plt.figure(figsize=(2, 2))
    try:
        conv = convert(["caption", fig, pd.DataFrame({"a": [1]})])
    finally:
        plt.close(fig)
    kinds = [type(b).__name__ for b in conv.content]
    assert kinds == ["TextContent", "ImageContent", "TextContent"]
    assert conv.content[0].text == "caption"
    assert conv.content[2].text.startswith("| a |")


def test_to_result():
    result = convert({"a": 1}).to_result()
    assert isinstance(result, CallToolResult)
    assert result.structured_content == {"a": 1} and not result.is_error
    dumped = result.model_dump(by_alias=True, exclude_none=True)
    assert dumped["structuredContent"] == {"a": 1}


# ------------------------------------------------------------------------------ mime bundles


def test_pandas_html_bundle_becomes_markdown_table_once():
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    conv = convert_mime_bundle({"text/html": df._repr_html_(), "text/plain": repr(df)})
    text = _only_text(conv)  # the html table only: text/plain is not sent as well
    assert text.split("\n") == [
        "| index | city | temp |",
        "| --- | --- | --- |",
        "| 0 | Oslo | 3.5 |",
        "| 1 | Lima | 19.0 |",
    ]
    assert conv.structured["columns"] == ["index", "city", "temp"]
    assert conv.structured["rows"][1] == {"index": 1, "city": "Lima", "temp": 19.0}
    assert conv.structured["total_rows"] == 2 and conv.structured["truncated"] is False


def test_truncated_pandas_html_reports_total_rows():
    df = pd.DataFrame({"a": range(1000)})
    conv = convert_mime_bundle({"text/html": df._repr_html_(), "text/plain": repr(df)})
    assert conv.structured["total_rows"] == 1000 and conv.structured["truncated"] is True
    assert all(r["a"] != "..." for r in conv.structured["rows"])
    assert "| ... | ... |" in conv.content[0].text
    assert conv.content[0].text.endswith("1000 rows (showing 10)")


def test_html_tables_with_named_index_multiindex_and_polars():
    grouped = pd.DataFrame({"k": ["x", "y", "x"], "v": [1, 2, 3]}).groupby("k").sum()
    conv = convert_mime_bundle({"text/html": grouped._repr_html_()})
    assert conv.structured["columns"] == ["k", "v"]
    assert conv.structured["rows"] == [{"k": "x", "v": 4}, {"k": "y", "v": 2}]
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]), index=["r"])
    assert convert_mime_bundle({"text/html": multi._repr_html_()}).structured["columns"] == [
        "index",
        "a_x",
        "a_y",
    ]
    conv = convert_mime_bundle({"text/html": pl.DataFrame({"a": [1], "b": ["q"]})._repr_html_()})
    assert conv.structured["rows"] == [{"a": 1, "b": "q"}]
    assert conv.structured["dtypes"] == {"a": "i64", "b": "str"}


def test_markdown_preferred_over_html():
    conv = convert_mime_bundle(
        {"text/markdown": "| a |\n|---|\n| 1 |", "text/html": "<table><tr><td>1</td></tr></table>"}
    )
    assert _only_text(conv) == "| a |\n|---|\n| 1 |"


def test_json_bundle():
    conv = convert_mime_bundle({"application/json": {"k": [1, 2]}, "text/plain": "{'k': [1, 2]}"})
    assert json.loads(_only_text(conv)) == {"k": [1, 2]}
    assert conv.structured == {"k": [1, 2]}


def test_png_bundle_base64_is_resized_image_only():
    payload = base64.b64encode(_png(4000, 3000)).decode()
    conv = convert_mime_bundle({"image/png": payload, "text/plain": "<Figure size 4000x3000 with 1 Axes>"})
    assert len(conv.content) == 1
    assert max(_decoded(conv.content[0]).size) == 1568


def test_svg_bundle():
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>'
    assert _only_text(convert_mime_bundle({"image/svg+xml": svg})) == svg
    conv = convert_mime_bundle({"image/svg+xml": svg, "text/plain": "<Circle>"})
    assert [b.text for b in conv.content] == ["<Circle>", "[an SVG image was also produced; not shown]"]


def test_plain_text_bundle_strips_ansi_and_default_repr_loses_to_html():
    assert _only_text(convert_mime_bundle({"text/plain": "\x1b[31mred\x1b[0m"})) == "red"
    conv = convert_mime_bundle({"text/html": "<b>bold</b> text", "text/plain": "<IPython.core.display.HTML object>"})
    assert _only_text(conv) == "bold text"


# ------------------------------------------------------------------------------------- errors


_ANSI_TB = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m0",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


def test_error_converted_strips_ansi():
    conv = values.error_converted("ZeroDivisionError", "division by zero", _ANSI_TB)
    assert conv.is_error
    text = _only_text(conv)
    assert text.startswith("ZeroDivisionError: division by zero\n\n")
    assert "\x1b" not in text
    assert "----> 1 1/0" in text
    assert conv.structured["ename"] == "ZeroDivisionError"
    assert conv.structured["evalue"] == "division by zero"
    assert "\x1b" not in conv.structured["traceback"] and "In[1], line 1" in conv.structured["traceback"]
    assert conv.to_result().is_error


def test_error_converted_keeps_the_end_of_long_tracebacks():
    tb = [f"\x1b[1mframe {i}\x1b[0m" for i in range(200)]
    conv = values.error_converted("RecursionError", "too deep", tb)
    lines = conv.structured["traceback"].split("\n")
    assert lines[0] == "[... 170 lines of traceback omitted ...]"
    assert lines[-1] == "frame 199" and len(lines) == 31
    wide = values.error_converted("E", "v", ["x" * 10_000])
    assert len(wide.structured["traceback"]) < 4_200
    assert values.error_converted("KeyboardInterrupt", "", None).content[0].text == "KeyboardInterrupt"


def user_tool(x: int) -> int:
    return helper_that_fails(x)


def helper_that_fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


# a stand-in for a framework module (nbmcp's tool wrapper): its frames must not be shown
_framework = types.ModuleType("fakeframework")
exec("def call(fn, *args):\n    return fn(*args)\n", _framework.__dict__)


def test_exception_converted_shows_user_frames_only():
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(_framework.call, user_tool, 3)
        with pytest.raises(ValueError) as info:
            future.result()
    conv = values.exception_converted(info.value, hide_modules=("fakeframework", "concurrent", "threading"))
    assert conv.is_error
    text = _only_text(conv)
    assert text.startswith("ValueError: bad input 3\n\nTraceback (most recent call last):\n")
    assert "in user_tool" in text and "in helper_that_fails" in text
    assert "return helper_that_fails(x)" in text  # source lines are shown
    assert "in call" not in text and "concurrent" not in text and "threading" not in text
    assert "\x1b" not in text
    assert conv.structured == {"ename": "ValueError", "evalue": "bad input 3", "traceback": text.split("\n\n", 1)[1]}


def test_exception_converted_default_hides_the_runner():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError) as info:
        pool.submit(user_tool, 1).result()
    text = _only_text(values.exception_converted(info.value))
    assert "concurrent/futures" not in text and "threading.py" not in text
    assert "in user_tool" in text


def test_exception_converted_names_the_cause():
    try:
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc
    except RuntimeError as exc:
        text = _only_text(values.exception_converted(exc))
    assert text.startswith("RuntimeError: lookup failed")
    assert "(caused by KeyError: 'missing')" in text


# ------------------------------------------------------------------------------- output store


def test_output_store_put_get_and_missing():
    store = OutputStore()
    oid = store.put("full text")
    assert re.fullmatch(r"[0-9a-f]{12}", oid)
    assert store.get(oid) == "full text"
    assert OutputStore.uri(oid) == f"nbmcp://outputs/{oid}"
    with pytest.raises(KeyError, match=re.escape(oid)) as info:
        store.get("nope")
    assert "known ids" in str(info.value)


def test_output_store_is_bounded_lru():
    store = OutputStore(max_entries=3, max_chars=1_000)
    a, b, c = store.put("a"), store.put("b"), store.put("c")
    store.get(a)  # a is now the most recently used
    d = store.put("d")
    assert set(store.ids()) == {a, c, d}  # b was least recently used
    with pytest.raises(KeyError):
        store.get(b)
    big = store.put("x" * 900)
    assert big in store.ids() and len(store) <= 3
    store.put("y" * 200)  # over max_chars: the big one goes
    assert big not in store.ids()
    huge = store.put("z" * 5_000)  # bigger than the bound: still kept (newest stays)
    assert store.ids() == [huge]


def test_output_store_thread_safe():
    store = OutputStore(max_entries=10_000)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        mine = [store.put(f"{n}-{i}") for i in range(200)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == 1600 and len(set(ids)) == 1600 and len(store) == 1600
    assert store.get(ids[0]).endswith("-0")


# ------------------------------------------------------------------------------------- budget


def test_budget_under_is_unchanged():
    conv = convert("short")
    assert apply_budget(conv, 100) is conv


def test_budget_keeps_head_and_tail_and_stores_full_text():
    lines = [f"line {i:05d}" for i in range(10_000)]
    full = "\n".join(lines)
    store = OutputStore()
    out = apply_budget(convert(full), 2_000, store)
    assert out.truncated
    text = _only_text(out)
    m = re.search(r"\n\[\.\.\. (\d+) characters cut; full output: nbmcp://outputs/([0-9a-f]+) \.\.\.\]\n", text)
    assert m, text[:2000]
    head, tail = text[: m.start()], text[m.end() :]
    assert full.startswith(head) and full.endswith(tail)
    assert 1_000 <= len(head) <= 1_200 and 600 <= len(tail) <= 800  # ~60% / ~40% of the budget
    assert head.endswith("\n")  # cut at a line end
    assert tail.startswith("line ")
    assert int(m.group(1)) == len(full) - len(head) - len(tail)
    assert store.get(m.group(2)) == full
    assert out.structured == {
        "truncated": True,
        "total_chars": len(full),
        "output_uri": f"nbmcp://outputs/{m.group(2)}",
    }


def test_budget_without_store_and_with_existing_structured():
    conv = Converted([TextContent(type="text", text="y" * 5_000)], {"rows": 3})
    out = apply_budget(conv, 1_000)
    assert "[... 4000 characters cut ...]" in out.content[0].text
    assert out.structured == {"rows": 3, "truncated": True}
    assert conv.structured == {"rows": 3}  # the input is not modified


def test_budget_spans_blocks_and_keeps_images():
    image = ImageContent(type="image", data="aGk=", mime_type="image/png")
    blocks = [TextContent(type="text", text=c * 1_000) for c in "abcde"]
    conv = Converted([blocks[0], blocks[1], image, blocks[2], blocks[3], blocks[4]])
    out = apply_budget(conv, 1_000, OutputStore())
    texts = [b.text for b in out.content if isinstance(b, TextContent)]
    joined = "".join(texts)
    assert joined.startswith("a" * 600) and joined.endswith("e" * 400)
    without_note = re.sub(r"\n\[\.\.\. .* \.\.\.\]\n", "", joined)
    assert without_note == "a" * 600 + "e" * 400
    assert sum(len(t) for t in texts) < 1_000 + 120  # the budget plus the note
    assert image in out.content
    note = re.search(r"\[\.\.\. (\d+) characters cut", joined)
    assert note and int(note.group(1)) == 4_000


def test_budget_caps_images():
    image = ImageContent(type="image", data="aGk=", mime_type="image/png")
    out = apply_budget(Converted([image] * 12), 1_000)
    assert sum(isinstance(b, ImageContent) for b in out.content) == values.MAX_IMAGES
    assert out.content[-1].text == "[4 more images not shown (at most 8)]"
    assert out.truncated


def test_budget_replaces_oversized_structured_content():
    store = OutputStore()
    value = {"items": list(range(20_000))}
    out = apply_budget(convert(value), 5_000, store)
    assert out.truncated and out.structured["truncated"] is True
    assert out.structured["structured_chars"] > 5_000
    full = store.get(out.structured["output_uri"].rsplit("/", 1)[1])
    assert json.loads(full) == value


def test_budget_of_a_big_output_is_linear():
    big = "x" * 5_000_000
    out = apply_budget(convert(big), values.DEFAULT_OUTPUT_BUDGET, OutputStore())
    assert len(out.content[0].text) < values.DEFAULT_OUTPUT_BUDGET + 200


# ---------------------------------------------------------------------------- streams/outputs


def test_strip_ansi_and_join_stream_text():
    assert values.strip_ansi("\x1b[1;32mok\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07") == "ok link"
    progress = ["start\n", "  0%\r", " 50%\r", "100%\r", "\n", "done\n"]
    assert values.join_stream_text(progress) == "start\n100%\ndone\n"
    assert values.join_stream_text(["a\r\nb"]) == "a\nb"


def test_convert_outputs():
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "hello "},
        {"output_type": "stream", "name": "stdout", "text": "world\n"},
        {"output_type": "stream", "name": "stderr", "text": "warn\n"},
        {"output_type": "display_data", "data": {"image/png": base64.b64encode(_png(10, 10)).decode()}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "execution_count": 1},
        {"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": ["\x1b[31mNameError\x1b[0m"]},
    ]
    conv = values.convert_outputs(outputs)
    kinds = [type(b).__name__ for b in conv.content]
    assert kinds == ["TextContent", "TextContent", "ImageContent", "TextContent", "TextContent"]
    assert conv.content[0].text == "hello world\n"
    assert conv.content[1].text == "[stderr]\nwarn\n"
    assert conv.content[3].text == "42"
    assert conv.content[4].text.startswith("NameError: x")
    assert conv.is_error and conv.structured["ename"] == "NameError"
