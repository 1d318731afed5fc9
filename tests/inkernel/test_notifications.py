"""Change notifications from the in-kernel server, both protocol eras: list changes when objects are exposed,
updates to subscribers after the cell that changed an object, and fingerprints for subscribed objects only.
"""

from __future__ import annotations

import json

import anyio
import pytest

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    setup = """
import pandas as pd
sales = pd.DataFrame({"order": range(1000), "amount": [i * 1.5 for i in range(1000)], "city": ["Oslo", "Lima"] * 500})
nbmcp.expose(sales, "sales", description="orders, one row per order")
"""
    return start_server(kernel, setup)


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


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed:UserWarning")  # the legacy era on purpose
@pytest.mark.parametrize("mode", MODES)
async def test_subscribing_to_a_big_frame_hashes_a_bounded_sample(
    server: dict, kernel: KernelHandle, mode: str
) -> None:
    """Subscribing to a frame of millions of rows, and the check after each cell, hash a sample, not the frame."""
    kernel.run(
        """
import numpy as np
from nbmcp.frames import digest as _digest
big = pd.DataFrame({"id": np.arange(4_000_000), "value": np.zeros(4_000_000)})
nbmcp.expose(big, "big")
rows_hashed = []
_real_hash = pd.util.hash_pandas_object
def _spy(obj, *args, **kwargs):  # counts the rows each fingerprint hashes; the real function does the work
    rows_hashed.append(len(obj))
    return _real_hash(obj, *args, **kwargs)
pd.util.hash_pandas_object = _spy
"""
    ).raise_for_error()
    uri = "nbmcp://objects/big"
    updated = anyio.Event()

    async def on_message(message) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated" and str(message.params.uri) == uri:
            updated.set()

    try:
        async with connect(server["url"], server["token"], mode=mode, message_handler=on_message) as client:
            if mode == "legacy":
                await client.subscribe_resource(uri)
                kernel.run("big.iloc[-1, 1] = 1.0").raise_for_error()  # the last row is always sampled
                with anyio.fail_after(10):
                    await updated.wait()
                await client.unsubscribe_resource(uri)
            else:
                async with client.listen(resource_subscriptions=[uri]) as subscription:
                    with anyio.fail_after(10):  # listening primes the fingerprint first
                        while not kernel.value("bool(rows_hashed)"):
                            await anyio.sleep(0.05)
                    kernel.run("big.iloc[-1, 1] = 2.0").raise_for_error()
                    with anyio.fail_after(10):
                        event = await subscription.__anext__()
                    assert type(event).__name__ == "ResourceUpdated" and event.uri == uri
        hashed = kernel.value("rows_hashed")
        assert hashed and max(hashed) <= kernel.value("_digest.SAMPLE_ROWS"), max(hashed)
    finally:
        kernel.run("pd.util.hash_pandas_object = _real_hash\nnbmcp.unexpose('big')\ndel big").raise_for_error()
