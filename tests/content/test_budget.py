"""nbmcp.content.budget: the output budget and the store of cut outputs."""

from __future__ import annotations

import json
import re
import threading

import pytest
from mcp.types import (
    ImageContent,
    TextContent,
)

from nbmcp import content
from nbmcp.content import Converted, OutputStore, apply_budget, convert
from tests.content.conftest import only_text


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


def test_budget_under_is_unchanged():
    conv = convert("short")
    assert apply_budget(conv, 100) is conv


def test_budget_keeps_head_and_tail_and_stores_full_text():
    lines = [f"line {i:05d}" for i in range(10_000)]
    full = "\n".join(lines)
    store = OutputStore()
    out = apply_budget(convert(full), 2_000, store)
    assert out.truncated
    text = only_text(out)
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
    assert sum(isinstance(b, ImageContent) for b in out.content) == content.MAX_IMAGES
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
    out = apply_budget(convert(big), content.DEFAULT_OUTPUT_BUDGET, OutputStore())
    assert len(out.content[0].text) < content.DEFAULT_OUTPUT_BUDGET + 200


def test_budget_can_leave_bounded_structured_content_alone():
    rows = [{"n": i, "s": "x" * 40} for i in range(1_000)]  # a read_rows page at the 1,000-row limit
    text = "\n".join(f"| {r['n']} | {r['s']} |" for r in rows)
    page = Converted([TextContent(type="text", text=text)], {"total_rows": 5_000, "rows": rows})
    store = OutputStore()
    out = apply_budget(page, 20_000, store, budget_structured=False)
    assert out.structured["rows"] == rows and out.structured["total_rows"] == 5_000  # every row is kept
    assert "characters cut" in only_text(out) and len(only_text(out)) < 20_200  # the text is still budgeted
    assert out.truncated and out.structured["truncated"] is True
    assert store.get(out.structured["output_uri"].rsplit("/", 1)[1]) == text
    assert page.structured == {"total_rows": 5_000, "rows": rows}  # the input is not modified
    stubbed = apply_budget(page, 20_000, store)  # the default budgets structured content too
    assert "rows" not in stubbed.structured and stubbed.structured["structured_chars"] > 20_000
    small_text = Converted([TextContent(type="text", text="1,000 rows")], page.structured)
    assert apply_budget(small_text, 20_000, budget_structured=False) is small_text
