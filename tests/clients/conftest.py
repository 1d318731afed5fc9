"""Servers for the client matrix, started once for the whole ``tests/clients`` package (each client module uses
them; starting them per module cost a minute of CI): ``nbmcp serve`` (stdio from the config
``nbmcp config claude`` prints, HTTP), the in-kernel server of a real kernel (HTTP from ``%mcp config claude-code``,
stdio through the bridge of ``%mcp config claude``) and the Jupyter Server extension."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.clients import printed_config
from tests.conftest import KernelHandle, start_kernel


@dataclass
class Http:
    """An MCP endpoint over HTTP and the bearer token it wants."""

    url: str
    token: str
    log: Callable[[], str] = str  # the server's log, for assertion messages (Jupyter's)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def entry(self) -> dict[str, Any]:
        """The ``mcpServers`` entry Claude Code, Cursor and the Inspector read for an HTTP server."""
        return {"type": "http", "url": self.url, "headers": self.headers}


@dataclass
class InKernel:
    """The in-kernel server of a test kernel and the configs ``%mcp config`` printed for it."""

    kernel: KernelHandle
    http: Http
    bridge: dict[str, Any]  # the stdio entry of `%mcp config claude`: `nbmcp bridge --kernel-id ID`
    http_entry: dict[str, Any]  # the entry of `%mcp config claude-code`


# A user's notebook: a frame, two tools (one returns a NaN in a TypedDict), a prompt; execute allowed and approved
# (there is no notebook frontend to ask).
INKERNEL_SETUP = """
%load_ext nbmcp
%mcp approve all
%mcp mode execute
import nbmcp, pandas as pd
from typing import TypedDict
orders = pd.DataFrame({"id": range(30), "total": [i * 2 for i in range(30)]})
nbmcp.expose(orders, "orders", description="30 orders")


@nbmcp.tool
def double(x: int) -> int:
    \"\"\"Twice x.\"\"\"
    return 2 * x


class Stats(TypedDict):
    mean: float
    count: int


@nbmcp.tool
def empty_stats() -> Stats:
    \"\"\"Statistics of an empty column: its mean is NaN.\"\"\"
    return {"mean": float("nan"), "count": 0}


@nbmcp.prompt
def explain_column(column: str) -> str:
    \"\"\"Ask for an explanation of one column of orders.\"\"\"
    return f"Explain the column {column} of the orders frame."
"""


def magic_config(kernel: KernelHandle, client: str) -> dict[str, Any]:
    """The one entry of what ``%mcp config CLIENT`` prints in the notebook."""
    printed = kernel.run(f"%mcp config {client}").raise_for_error().stdout
    (entry,) = json.loads(printed)["mcpServers"].values()
    return entry


@pytest.fixture(scope="package")
def serve_stdio() -> dict[str, Any]:
    """The stdio entry ``nbmcp config claude`` prints for ``nbmcp serve``."""
    return printed_config("claude")["mcpServers"]["jupyter"]


@pytest.fixture(scope="package")
def serve_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    """``nbmcp serve --transport http`` (a kernel per client session) at the URL it prints first."""
    from tests.serve.test_run_http import TOKEN, ServeProcess

    proc = ServeProcess(tmp_path_factory.mktemp("serve-http"))
    try:
        assert proc.printed_url.endswith("/mcp") and "/k/" in proc.printed_url, proc.printed_url
        yield Http(proc.printed_url, TOKEN)  # what a user copies: the URL printed first (/k/NAME/mcp)
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def inkernel() -> Iterator[InKernel]:
    handle = start_kernel()
    try:
        handle.run(INKERNEL_SETUP).raise_for_error()
        info = handle.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")
        yield InKernel(
            handle,
            Http(info["url"], info["token"]),
            magic_config(handle, "claude"),
            magic_config(handle, "claude-code"),
        )
    finally:
        handle.shutdown()


@pytest.fixture(scope="package")
def jupyter_ext() -> Iterator[Http]:
    """A Jupyter Server with the nbmcp extension (``{base_url}nbmcp/mcp``, Jupyter's token) and one notebook."""
    import nbformat

    from tests.jupyter_helpers import jupyter_server

    with jupyter_server() as js:
        nbformat.write(nbformat.v4.new_notebook(), js.root / "analysis.ipynb")  # a notebook the user opened
        js.start_notebook_kernel("analysis.ipynb")
        yield Http(js.url + "nbmcp/mcp", js.token, js.log_text)
