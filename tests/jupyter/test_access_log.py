"""At debug level, Jupyter's access log still shows every proxied MCP request (the forwarder skips formatting
those lines only when they would be dropped)."""

from __future__ import annotations

import anyio
import pytest

from nbmcp.client import connect
from tests.jupyter_helpers import jupyter_server, wait_for

pytestmark = [pytest.mark.timeout(120)]


def test_proxied_requests_are_in_the_access_log_at_debug_level() -> None:
    from nbmcp.serve.kernel.session import KernelSession

    with jupyter_server(base_url="/user/debug/", extra_args=["--ServerApp.log_level=DEBUG"]) as js:
        kernel_id = js.start_notebook_kernel("logged.ipynb")

        async def load_and_call() -> None:
            session = await KernelSession.remote(js.url, js.token, kernel_id=kernel_id)
            try:
                loaded = await session.execute(
                    "%load_ext nbmcp\nimport nbmcp\n@nbmcp.tool\ndef one() -> int:\n    return 1"
                )
                assert loaded.status == "ok", loaded.error
            finally:
                await session.shutdown()
            async with connect(f"{js.url}nbmcp/kernels/{kernel_id}/mcp", js.token, mode="legacy") as client:
                result = await client.call_tool("one", {})
                assert not result.is_error

        anyio.run(load_and_call)
        line = f"200 POST /user/debug/nbmcp/kernels/{kernel_id}/mcp"
        wait_for(lambda: line in js.log.read_text(errors="replace"), timeout=10, what="the access log line")
