"""The README's ``chart_column`` prompt example, as a user pastes it into a notebook: the client gets the chart as an
image, and the user's next cell shows nothing of it (no ``<Figure …>``, no stray plot), because the figure is
built off pyplot, so no backend ever owns it.

The kernel keeps its default (inline) backend, as in Jupyter: that backend shows every figure pyplot still has open
at the end of the next cell, which is how the old example (``sales[column].plot().figure``) leaked.
"""

from __future__ import annotations

import pytest
from mcp.types import EmbeddedResource, ImageContent, TextContent

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

# The README's example ("More of MCP"), verbatim apart from the frame it needs
EXAMPLE = """
from matplotlib.figure import Figure


@nbmcp.prompt(complete={"column": lambda prefix: [c for c in sales.columns if c.startswith(prefix)]})
def chart_column(column: str) -> list:
    fig = Figure()  # not pyplot's: the user's next cell shows no stray <Figure ...>
    sales[column].plot(ax=fig.subplots())
    return [f"What stands out in {column}?", fig, nbmcp.embed_resource("nbmcp://objects/sales/rows/0/20")]
"""

SETUP = """
import nbmcp, pandas as pd
sales = pd.DataFrame({"customer": [f"c{i}" for i in range(30)], "revenue": [float(i) for i in range(30)]})
nbmcp.expose(sales, "sales")
"""


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    info = start_server(kernel, SETUP)
    kernel.run(EXAMPLE).raise_for_error()
    return info


async def test_the_chart_reaches_the_client_and_nothing_reaches_the_next_cell(
    server: dict, kernel: KernelHandle
) -> None:
    async with connect(server["url"], server["token"]) as client:
        result = await client.get_prompt("chart_column", {"column": "revenue"})
    kinds = [type(m.content) for m in result.messages]
    assert kinds == [TextContent, ImageContent, EmbeddedResource], kinds
    assert result.messages[1].content.mime_type == "image/png"
    nxt = kernel.run("'next cell'").raise_for_error()
    assert nxt.displays == [], [sorted(d) for d in nxt.displays]  # no figure shown by the inline backend
    open_figures = kernel.value(
        "__import__('sys').modules['matplotlib.pyplot'].get_fignums() "
        "if 'matplotlib.pyplot' in __import__('sys').modules else []"
    )
    assert open_figures == []
