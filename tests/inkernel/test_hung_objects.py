"""An exposed object that hangs (its ``shape``, its pickling) holds up nobody: not a new session's ``tools/list``, not
``list_objects`` or the ``nbmcp://objects`` index (its entry says it did not answer; the others are whole), not a
subscription, and not the human's next cell (the post-cell fingerprints)."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from mcp.types import TextContent

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
PROMPTLY = 10  # seconds: a hung object is given 2 s (nbmcp.inkernel.calls.untrusted.OBJECT_READ_SECONDS)


@pytest.fixture(scope="module")
def server(kernel: KernelHandle):
    setup = """
import threading, pandas as pd
release = threading.Event()  # set at the end of the module: the stuck threads then end

class Hangs:
    @property
    def shape(self):
        release.wait()  # blocked in C: no asynchronous exception reaches it before the release
        return (1,)

    def __getstate__(self):  # what a subscription's fingerprint pickles
        release.wait()
        return {}

sales = pd.DataFrame({"order": range(100), "city": ["Oslo", "Lima"] * 50})
nbmcp.expose(sales, "sales")
nbmcp.expose(Hangs(), "stuck")
nbmcp.expose({"alpha": 0.5}, "settings")
"""
    info = start_server(kernel, setup)
    try:
        yield info
    finally:
        kernel.run("release.set()", timeout=30)


def check_index(objects: list[dict]) -> None:
    by_name = {o["name"]: o for o in objects}
    assert "did not answer within 2 s" in by_name["stuck"]["error"], by_name["stuck"]
    assert by_name["sales"]["shape"] == [100, 2] and by_name["sales"]["kind"] == "pandas.DataFrame"
    assert by_name["settings"]["shape"] == [1] and "error" not in by_name["settings"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_hung_shape_is_marked_in_its_entry_and_holds_up_nobody(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as first:
        with anyio.fail_after(PROMPTLY):
            index = await first.read_resource("nbmcp://objects")
        check_index(json.loads(index.contents[0].text)["objects"])

        # the stuck read is still running: a new session is served at once, and so are the index and the tool
        async with connect(server["url"], server["token"], mode=mode) as second:
            with anyio.fail_after(PROMPTLY):
                names = {tool.name for tool in (await second.list_tools()).tools}
                listed = await second.call_tool("list_objects", {})
                again = await first.read_resource("nbmcp://objects")
            assert "list_objects" in names and not listed.is_error
            check_index(listed.structured_content["objects"])
            check_index(json.loads(again.contents[0].text)["objects"])
            with anyio.fail_after(PROMPTLY):
                described = await second.call_tool("describe_object", {"name": "sales"})
            assert "| order |" in "\n".join(c.text for c in described.content if isinstance(c, TextContent))


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed:UserWarning")  # the legacy era on purpose
async def test_a_subscription_to_an_object_that_hangs_holds_up_neither_client_nor_cell(
    server: dict, kernel: KernelHandle
) -> None:
    async with connect(server["url"], server["token"], mode="legacy") as client:
        with anyio.fail_after(PROMPTLY):
            await client.subscribe_resource("nbmcp://objects/stuck")  # fingerprints the object: it hangs
        started = time.monotonic()
        for _ in range(2):  # after each cell the subscribed objects are fingerprinted, on the kernel's main thread
            kernel.run("x = 1", timeout=PROMPTLY).raise_for_error()
        assert time.monotonic() - started < PROMPTLY
        with anyio.fail_after(PROMPTLY):
            await client.unsubscribe_resource("nbmcp://objects/stuck")
