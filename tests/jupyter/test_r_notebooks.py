"""A human's R notebook in a real `jupyter server`, explored by an assistant through the extension's kernel
tools: the same R adapter `nbmcp serve` uses, over the server's kernel WebSocket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from nbmcp.client import connect
from tests.jupyter_helpers import JupyterProcess, jupyter_server
from tests.mcp_results import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        "ir" not in KernelSpecManager().find_kernel_specs(),
        reason="no `ir` kernelspec (IRkernel): apt-get install r-cran-irkernel",
    ),
]


@pytest.fixture(scope="module")
def js() -> Iterator[JupyterProcess]:
    with jupyter_server() as server:
        yield server


@pytest.fixture(scope="module")
def r_kernel(js: JupyterProcess) -> str:
    """An R notebook opened as JupyterLab opens one."""
    body = {"path": "survey.ipynb", "type": "notebook", "name": "survey.ipynb", "kernel": {"name": "ir"}}
    response = js.api("POST", "api/sessions", json=body)
    response.raise_for_status()
    return response.json()["kernel"]["id"]


async def test_an_r_notebook_is_explored_like_a_python_one(js: JupyterProcess, r_kernel: str) -> None:
    from nbmcp.serve.kernel.session import KernelSession

    human = await KernelSession.remote(js.url, js.token, kernel_id=r_kernel)  # the notebook's own cell
    try:
        ran = await human.execute("answers <- data.frame(q = c('a', 'b', 'c'), score = c(3L, 5L, 4L))", timeout=60)
        assert ran.status == "ok", ran.error
    finally:
        await human.shutdown()
    async with connect(js.url + "nbmcp/mcp", js.token) as client:
        listed = await client.call_tool("list_variables", {"notebook": "survey.ipynb"})
        assert "answers: data.frame 3x2" in text_of(listed), text_of(listed)
        rows = await client.call_tool("read_rows", {"name": "answers", "notebook": "survey.ipynb", "offset": 1})
        assert rows.structured_content["rows"] == [{"q": "b", "score": 5}, {"q": "c", "score": 4}]
        described = await client.call_tool("inspect_variable", {"name": "answers", "notebook": "survey.ipynb"})
        assert "columns: q (character), score (integer)" in text_of(described), text_of(described)
