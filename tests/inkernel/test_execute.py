"""The opt-in `execute` tool of the in-kernel server: off by default, main thread, between cells."""

from __future__ import annotations

import base64
import io
import time

import anyio
import pytest
from mcp.types import ImageContent

from tests.conftest import KernelHandle, connect
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_execute_is_off_until_the_user_turns_it_on(server: dict, kernel: KernelHandle) -> None:
    async with connect(server["url"], server["token"]) as client:
        assert "execute" not in {t.name for t in (await client.list_tools()).tools}
        kernel.run("%mcp approve all\n%mcp allow-execute").raise_for_error()
        assert "execute" in {t.name for t in (await client.list_tools()).tools}


async def test_execute_runs_in_the_user_namespace_and_returns_output(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp approve all\n%mcp mode execute").raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("execute", {"code": "answer = 41\nprint('side effect')\nanswer + 1"})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "side effect\n42"
        assert kernel.value("answer") == 41  # the user's namespace, live
        failed = await client.call_tool("execute", {"code": "1 / 0"})
        assert failed.is_error and "ZeroDivisionError" in text_of(failed)


async def test_execute_shows_values_as_the_cell_would(server: dict, kernel: KernelHandle) -> None:
    """One converter for cell values: IPython's display formatter, as ``nbmcp serve`` shows a kernel's result."""
    kernel.run("%mcp approve all\n%mcp mode execute").raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("execute", {"code": "(5, 2)"})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "(5, 2)"
        assert text_of(await client.call_tool("execute", {"code": "'text'"})) == "'text'"  # as Out shows it
        quiet = await client.call_tool("execute", {"code": "unused = None"})
        assert not quiet.is_error and text_of(quiet) == "(done: the code displayed nothing and has no value)"


async def test_execute_downscales_images_to_the_servers_limit(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp approve all\n%mcp mode execute").raise_for_error()
    served = "nbmcp.inkernel.lifecycle.current_server().mcp_server"
    kernel.run(f"_old_max_px = {served}.image_max_px\n{served}.image_max_px = 64").raise_for_error()
    code = "from PIL import Image\nfrom IPython.display import display\nimg = Image.new('RGB', (400, 200))\n"
    try:
        async with connect(server["url"], server["token"]) as client:
            result = await client.call_tool("execute", {"code": code + "display(img)\nimg"})
    finally:
        kernel.run(f"{served}.image_max_px = _old_max_px").raise_for_error()
    assert not result.is_error, text_of(result)
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 2  # the one displayed and the cell's value
    from PIL import Image

    for image in images:
        with Image.open(io.BytesIO(base64.b64decode(image.data))) as decoded:
            assert decoded.size == (64, 32)


async def test_execute_waits_for_the_running_cell(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp approve all\n%mcp mode execute").raise_for_error()
    msg_id = kernel.start_cell("import time\ntime.sleep(1.5)\nmarker = 'cell finished'")
    try:
        async with connect(server["url"], server["token"]) as client:
            started = time.monotonic()
            with anyio.fail_after(30):
                result = await client.call_tool("execute", {"code": "marker"})
            # It ran after the cell, on the main thread: it sees the cell's result.
            assert text_of(result) == "'cell finished'"  # the value as the cell's Out shows it
            assert time.monotonic() - started > 0.5
    finally:
        kernel.wait_idle(msg_id, timeout=30)


async def test_execute_without_approval_policy_and_no_panel_is_denied(server: dict, kernel: KernelHandle) -> None:
    kernel.run("%mcp approve ask\n%mcp mode execute").raise_for_error()
    async with connect(server["url"], server["token"]) as client:
        result = await client.call_tool("execute", {"code": "1"})
        assert result.is_error and "%mcp panel" in text_of(result)
    kernel.run("%mcp mode tools").raise_for_error()
