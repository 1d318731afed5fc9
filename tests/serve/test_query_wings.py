"""Both wings answer ``query`` in the same words: the in-kernel server (``%load_ext nbmcp``) and ``nbmcp serve
--existing`` attached to the same kernel run the same SQL over the same frame, through the SDK client over real
HTTP, and their text and structured answers are the same (but for the time taken and serve's kernel field).
The ``save_as`` name rule is the same in both (:mod:`nbmcp.frames.query.query_answer`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import KernelHandle, connect
from tests.mcp_results import text_of
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SETUP = """
%load_ext nbmcp
import nbmcp, pandas as pd
sales = pd.DataFrame({"city": ["Oslo", "Lima", "Oslo", "Pune"], "amount": [10.0, 5.5, 2.0, 1.0]})
sales["id"] = [1, 2, 3, 2**60]
nbmcp.expose(sales, "sales")
"""

QUERIES = [
    {"sql": "SELECT city, sum(amount) AS total FROM sales GROUP BY city ORDER BY city"},
    {"sql": "SELECT * FROM sales ORDER BY amount", "limit": 2},  # more rows than shown; a big integer
    {"sql": "SELECT * FROM sales WHERE amount < 0"},  # no rows
    {"sql": "SELECT repeat('x', 100000) AS long_text"},  # a value cut, with a note
]


@pytest.fixture(scope="module")
def wings(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    kernel.run(SETUP).raise_for_error()
    inkernel = kernel.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")
    serve = ServeProcess(tmp_path_factory.mktemp("wings"), "--existing", kernel.km.connection_file)
    try:
        yield {"inkernel": (inkernel["url"], inkernel["token"]), "serve": (serve.url, TOKEN)}
    finally:
        serve.stop()


async def ask(endpoint: tuple[str, str], arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    async with connect(*endpoint, mode="legacy") as client:
        result = await client.call_tool("query", arguments)
    assert not result.is_error, text_of(result)
    data = dict(result.structured_content)
    data.pop("elapsed_ms")
    data.pop("kernel", None)  # serve says which kernel answered
    return re.sub(r" in \d+ ms", " in N ms", text_of(result), count=1), data


@pytest.mark.parametrize("arguments", QUERIES, ids=["group-by", "more", "no-rows", "cut"])
async def test_both_wings_word_a_query_answer_identically(wings: dict[str, Any], arguments: dict[str, Any]) -> None:
    inkernel = await ask(wings["inkernel"], arguments)
    served = await ask(wings["serve"], arguments)
    assert served == inkernel
    text, data = inkernel
    assert data["row_count"] == len(data["rows"]) and text.startswith(f"{len(data['rows'])} rows")


async def test_save_as_is_worded_the_same_and_cut_at_the_save_limit(wings: dict[str, Any]) -> None:
    arguments = {"sql": "SELECT range AS n FROM range(1000001)", "limit": 1}  # one row past the default save limit
    inkernel = await ask(wings["inkernel"], {**arguments, "save_as": "cities_kernel"})
    served = await ask(wings["serve"], {**arguments, "save_as": "cities_serve"})
    assert served[0].replace("cities_serve", "cities_kernel") == inkernel[0]
    assert inkernel[1]["saved_as"] == {"name": "cities_kernel", "rows": 10**6, "truncated": True, "max_rows": 10**6}
    assert "saved as 'cities_kernel' (1,000,000 rows, cut at the save limit of 1,000,000 rows)" in inkernel[0]


@pytest.mark.parametrize("name", ["_hidden", "class", "not a name", "1st"])
async def test_both_wings_refuse_the_same_save_as_names(wings: dict[str, Any], name: str) -> None:
    answers = []
    for wing in ("inkernel", "serve"):
        async with connect(*wings[wing], mode="legacy") as client:
            result = await client.call_tool("query", {"sql": "SELECT 1 AS x", "save_as": name})
        assert result.is_error
        answers.append(text_of(result))
    assert (
        f"save_as must be a new name made of letters, digits and _, not starting with _ and not a Python keyword, "
        f"got {name!r}" in answers[0]
    )
    assert answers[0].split("save_as must", 1)[1] == answers[1].split("save_as must", 1)[1]


async def test_both_wings_page_a_frame_identically(wings: dict[str, Any]) -> None:
    """read_rows: the in-kernel server and serve's probe shape a page with one function (frames.page_info)."""
    pages = []
    for wing in ("inkernel", "serve"):
        async with connect(*wings[wing], mode="legacy") as client:
            result = await client.call_tool("read_rows", {"name": "sales", "offset": 1, "limit": 3})
        assert not result.is_error, text_of(result)
        pages.append({k: v for k, v in result.structured_content.items() if k not in ("name", "kernel")})
    assert pages[0] == pages[1]
    assert pages[0]["rows"][-1]["id"] == str(2**60) and pages[0]["big_integers_as_strings"] == ["id"]
