"""Exposed objects as live resources and read-only tools, in a real kernel, both protocol eras."""

from __future__ import annotations

import json

import anyio
import pyarrow as pa
import pytest
from mcp.types import TextContent

from tests.conftest import KernelHandle, connect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
MODES = ["legacy", "auto"]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    kernel.run(
        """
%load_ext nbmcp
import nbmcp, pandas as pd, polars as pl
sales = pd.DataFrame({"order": range(1000), "amount": [i * 1.5 for i in range(1000)], "city": ["Oslo", "Lima"] * 500})
nbmcp.expose(sales, "sales", description="orders, one row per order")
fast = pl.DataFrame({"k": list(range(20)), "v": ["a"] * 20})
nbmcp.expose("fast")
settings = {"alpha": 0.5, "tags": ["x", "y"]}
nbmcp.expose(settings, "settings")
"""
    ).raise_for_error()
    return kernel.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


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
async def test_expose_and_unexpose_announce_list_changes(server: dict, kernel: KernelHandle, mode: str) -> None:
    changed = anyio.Event()

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/resources/list_changed":
            changed.set()

    async with connect(server["url"], server["token"], mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            await client.list_resources()
            kernel.run("extra = [1, 2, 3]\nnbmcp.expose(extra, 'extra')").raise_for_error()
            with anyio.fail_after(10):
                await changed.wait()
        else:
            async with client.listen(resources_list_changed=True) as subscription:
                kernel.run("extra = [1, 2, 3]\nnbmcp.expose(extra, 'extra')").raise_for_error()
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
                assert type(event).__name__ == "ResourcesListChanged"
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "nbmcp://objects/extra" in uris
        kernel.run("nbmcp.unexpose('extra')").raise_for_error()
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "nbmcp://objects/extra" not in uris


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed:UserWarning")  # the legacy era on purpose
@pytest.mark.parametrize("mode", MODES)
async def test_subscribers_hear_about_changes_made_by_a_cell(server: dict, kernel: KernelHandle, mode: str) -> None:
    uri = "nbmcp://objects/sales"
    updated = anyio.Event()

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated" and str(message.params.uri) == uri:
            updated.set()

    async with connect(server["url"], server["token"], mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            await client.subscribe_resource(uri)
            kernel.run("x = 1").raise_for_error()  # a cell that changes nothing sends nothing
            kernel.run("sales.loc[0, 'amount'] = -1.0").raise_for_error()
            with anyio.fail_after(10):
                await updated.wait()
            await client.unsubscribe_resource(uri)
        else:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                kernel.run("x = 2").raise_for_error()
                kernel.run("sales.loc[0, 'amount'] = -2.0").raise_for_error()
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
                assert type(event).__name__ == "ResourceUpdated" and event.uri == uri
        page = json.loads((await client.read_resource("nbmcp://objects/sales/rows/0/1")).contents[0].text)
        assert page["rows"][0]["amount"] < 0


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed:UserWarning")  # the legacy era on purpose
async def test_only_subscribed_objects_are_fingerprinted(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        """
hashed = {"watched": 0, "unwatched": 0}

class Counted:
    \"\"\"Counts how often the post-cell check hashes it (fingerprints pickle the value).\"\"\"
    def __init__(self, label):
        self.label = label
    def __reduce__(self):
        hashed[self.label] += 1
        return (Counted, (self.label,))

nbmcp.expose(Counted("watched"), "watched")
nbmcp.expose(Counted("unwatched"), "unwatched")
"""
    ).raise_for_error()
    uri = "nbmcp://objects/watched"
    async with connect(server["url"], server["token"], mode="legacy") as client:
        await client.subscribe_resource(uri)
        assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.subscribed_uris()") == [uri]
        before = kernel.value("hashed")
        for _ in range(3):
            kernel.run("pass").raise_for_error()
        after = kernel.value("hashed")
        await client.unsubscribe_resource(uri)
    assert after["watched"] >= before["watched"] + 3  # checked after every cell
    assert after["unwatched"] == 0  # never hashed: costs nothing per cell
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().mcp_server.subscribed_uris()") == []
