"""Exposed objects as live resources and read-only tools, in a real kernel, both protocol eras."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    setup = """
import pandas as pd, polars as pl
sales = pd.DataFrame({"order": range(1000), "amount": [i * 1.5 for i in range(1000)], "city": ["Oslo", "Lima"] * 500})
nbmcp.expose(sales, "sales", description="orders, one row per order")
fast = pl.DataFrame({"k": list(range(20)), "v": ["a"] * 20})
nbmcp.expose(variable="fast")
settings = {"alpha": 0.5, "tags": ["x", "y"]}
nbmcp.expose(settings, "settings")
"""
    return start_server(kernel, setup)


@pytest.mark.parametrize("mode", MODES)
async def test_resources_index_summary_rows_and_arrow(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"nbmcp://objects", "nbmcp://objects/sales", "nbmcp://objects/fast", "nbmcp://objects/settings"} <= uris
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert {"nbmcp://objects/{name}/rows/{offset}/{limit}", "nbmcp://objects/{name}/arrow"} <= templates

        index = json.loads((await client.read_resource("nbmcp://objects")).contents[0].text)
        by_name = {o["name"]: o for o in index["objects"]}
        assert by_name["sales"]["shape"] == [1000, 3] and by_name["sales"]["kind"] == "pandas.DataFrame"
        assert by_name["sales"]["description"] == "orders, one row per order"
        assert by_name["fast"]["kind"] == "polars.DataFrame"

        summary = (await client.read_resource("nbmcp://objects/sales")).contents
        assert "1,000 rows x 3 columns" in summary[0].text and "| order |" in summary[0].text
        assert json.loads(summary[1].text)["shape"] == [1000, 3]

        page = (await client.read_resource("nbmcp://objects/sales/rows/990/5")).contents
        data = json.loads(page[0].text)
        assert [r["order"] for r in data["rows"]] == [990, 991, 992, 993, 994]
        assert data["total_rows"] == 1000 and "| 994 |" in page[1].text

        blob = (await client.read_resource("nbmcp://objects/fast/arrow")).contents[0]
        assert blob.mime_type == "application/vnd.apache.arrow.stream"
        import base64

        table = pa.ipc.open_stream(base64.b64decode(blob.blob)).read_all()
        assert table.num_rows == 20 and table.column_names == ["k", "v"]

        settings = (await client.read_resource("nbmcp://objects/settings")).contents
        assert "alpha" in settings[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_tools_reach_the_same_data(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        listed = await client.call_tool("list_objects", {})
        names = {o["name"] for o in listed.structured_content["objects"]}
        assert {"sales", "fast", "settings"} <= names
        described = await client.call_tool("describe_object", {"name": "sales"})
        assert described.structured_content["shape"] == [1000, 3]
        assert "orders, one row per order" in text_of(described)
        rows = await client.call_tool("read_rows", {"name": "sales", "offset": 2, "limit": 2, "columns": ["city"]})
        assert rows.structured_content["rows"] == [{"city": "Oslo"}, {"city": "Lima"}]
        assert rows.structured_content["total_rows"] == 1000


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_names_and_bad_pages_are_clear_errors(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        result = await client.call_tool("read_rows", {"name": "nope"})
        assert result.is_error and "nope" in text_of(result) and "sales" in text_of(result)
        result = await client.call_tool("read_rows", {"name": "sales", "columns": ["missing"]})
        assert result.is_error and "missing" in text_of(result) and "columns" in text_of(result)
        result = await client.call_tool("read_rows", {"name": "settings"})
        assert result.is_error and "not a DataFrame" in text_of(result)
        with pytest.raises(Exception, match="sales"):
            await client.read_resource("nbmcp://objects/nope")


async def test_rebinding_an_exposed_name_is_live(server: dict, kernel: KernelHandle) -> None:
    async with connect(server["url"], server["token"]) as client:
        before = await client.call_tool("describe_object", {"name": "fast"})
        assert before.structured_content["shape"] == [20, 2]
        kernel.run("fast = pl.DataFrame({'k': [1, 2, 3]})").raise_for_error()
        after = await client.call_tool("describe_object", {"name": "fast"})
        assert after.structured_content["shape"] == [3, 1]


@pytest.mark.parametrize("mode", MODES)
async def test_user_resources_and_templates(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        '''
@nbmcp.resource("docs://readme", mime_type="text/markdown")
def readme() -> str:
    """The project readme."""
    return "# Readme"

@nbmcp.resource("items://{item_id}")
def item(item_id: str) -> dict:
    return {"id": item_id, "price": 3}
'''
    ).raise_for_error()
    async with connect(server["url"], server["token"], mode=mode) as client:
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert resources["docs://readme"].mime_type == "text/markdown"
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "items://{item_id}" in templates
        readme = (await client.read_resource("docs://readme")).contents[0]
        assert readme.text == "# Readme" and readme.mime_type == "text/markdown"
        item = json.loads((await client.read_resource("items://42")).contents[0].text)
        assert item == {"id": "42", "price": 3}


async def test_read_rows_names_the_columns_whose_big_integers_are_strings(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        'ids = pd.DataFrame({"id": [1, 2**60], "code": ["9007199254740993", "x"], "n": [1, 2]})\n'
        'nbmcp.expose(variable="ids")'
    ).raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        rows = await client.call_tool("read_rows", {"name": "ids"})
        data = rows.structured_content
        assert data["rows"][1] == {"id": "1152921504606846976", "code": "x", "n": 2}
        assert data["big_integers_as_strings"] == ["id"]  # a text column of digits is text
        assert "integers beyond ±2**53 in id are given as strings" in text_of(rows)
        plain = await client.call_tool("read_rows", {"name": "sales", "limit": 2})
        assert "big_integers_as_strings" not in plain.structured_content


async def test_a_deep_page_says_where_it_is_in_one_number_format(server: dict, kernel: KernelHandle) -> None:
    kernel.run('long = pd.DataFrame({"n": range(2_000_000)})\nnbmcp.expose(variable="long")').raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        rows = await client.call_tool("read_rows", {"name": "long", "offset": 1_999_990, "limit": 5})
        assert "Rows 1,999,990 to 1,999,994 of 2,000,000 in 'long'" in text_of(rows)
