"""One kernel-tool catalog: the Jupyter extension's ``{base_url}nbmcp/mcp`` offers every kernel tool of ``nbmcp
serve``, with the same arguments, plus ``notebook`` on each tool that acts on a caller-chosen kernel.

A real ``nbmcp serve`` (stdio) and a real Jupyter Server, both listed through the SDK client; then the tools the
copies once lacked (``query``, ``restart``) are called for real through the Jupyter endpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from nbmcp.client import connect
from tests.jupyter_helpers import JupyterProcess, jupyter_server
from tests.serve.test_tools import serve_params, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

# The tools that act on a kernel the caller chooses: on a Jupyter Server they take `notebook`. The task tools
# name their task, the notebook file tools their file (notebook_run runs in the notebook's own kernel).
SELECTS_A_KERNEL = {
    "execute",
    "interrupt",
    "restart",
    "list_kernelspecs",
    "list_variables",
    "inspect_variable",
    "read_rows",
    "query",
}
JUPYTER_OWN = {"list_notebooks"}


@pytest.fixture(scope="module")
def js() -> Iterator[JupyterProcess]:
    with jupyter_server() as server:
        yield server


@pytest.fixture(scope="module")
def notebook(js: JupyterProcess) -> str:
    js.start_notebook_kernel("parity.ipynb")
    return "parity.ipynb"


async def serve_listing(workdir: Path, *args: str) -> tuple[dict[str, Any], list[str]]:
    async with Client(serve_params("--no-record", *args, cwd=workdir)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    return tools, templates


async def jupyter_listing(js: JupyterProcess) -> tuple[dict[str, Any], list[str]]:
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    return tools, templates


def without_notebook(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    schema.get("properties", {}).pop("notebook", None)
    return schema


async def test_the_jupyter_endpoint_offers_every_kernel_tool_of_serve_with_the_same_arguments(
    js: JupyterProcess, notebook: str, tmp_path: Path
) -> None:
    serve_tools, serve_templates = await serve_listing(tmp_path)
    jupyter_tools, jupyter_templates = await jupyter_listing(js)

    assert sorted(set(serve_tools) - set(jupyter_tools)) == []  # nothing of serve's is missing
    assert set(jupyter_tools) - set(serve_tools) == JUPYTER_OWN  # and nothing else is Jupyter's own
    assert set(serve_templates) <= set(jupyter_templates)  # the full text of cut outputs, readable there too
    for name, tool in serve_tools.items():
        offered = jupyter_tools[name].input_schema
        if name in SELECTS_A_KERNEL:
            selector = offered["properties"]["notebook"]
            assert "notebook" not in offered.get("required", []), name  # optional when one kernel runs
            assert "list_notebooks" in selector["description"], name
        else:
            assert "notebook" not in offered["properties"], name
        assert without_notebook(offered) == tool.input_schema, name  # same names, types, defaults, descriptions
        assert jupyter_tools[name].annotations == tool.annotations, name


async def test_read_only_endpoints_offer_the_same_kernel_tools(tmp_path: Path) -> None:
    serve_tools, _ = await serve_listing(tmp_path, "--read-only")
    with jupyter_server(extra_args=["--NbMCPServerExtension.read_only=True"]) as read_only:
        jupyter_tools, _ = await jupyter_listing(read_only)
    assert set(jupyter_tools) == set(serve_tools) | JUPYTER_OWN
    assert "query" in jupyter_tools and "execute" not in jupyter_tools


async def test_query_runs_through_the_jupyter_endpoint(js: JupyterProcess, notebook: str) -> None:
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        made = await client.call_tool(
            "execute",
            {"code": "import pandas as pd\ncities = pd.DataFrame({'city': list('abca'), 'n': range(4)})",
             "notebook": notebook},
        )  # fmt: skip
        assert not made.is_error, text_of(made)
        result = await client.call_tool(
            "query",
            {"sql": "SELECT city, sum(n) AS total FROM cities GROUP BY city ORDER BY city", "notebook": notebook},
        )
    assert not result.is_error, text_of(result)
    assert result.structured_content["rows"] == [
        {"city": "a", "total": 3},
        {"city": "b", "total": 1},
        {"city": "c", "total": 2},
    ]
    assert result.structured_content["notebooks"] == [notebook]


async def test_restart_runs_through_the_jupyter_endpoint(js: JupyterProcess, notebook: str) -> None:
    async with connect(js.url + "nbmcp/mcp", js.token, mode="legacy") as client:
        before = await client.call_tool("execute", {"code": "import os; kept = 1; os.getpid()", "notebook": notebook})
        assert not before.is_error, text_of(before)
        restarted = await client.call_tool("restart", {"notebook": notebook})
        assert not restarted.is_error, text_of(restarted)
        assert "all variables are gone" in text_of(restarted)
        assert restarted.structured_content["notebooks"] == [notebook]
        after = await client.call_tool("execute", {"code": "import os; os.getpid()", "notebook": notebook})
        assert not after.is_error, text_of(after)
        assert after.structured_content["kernel"]["pid"] != before.structured_content["kernel"]["pid"]
        gone = await client.call_tool("execute", {"code": "kept", "notebook": notebook})
        assert gone.is_error and "NameError" in text_of(gone)  # a fresh process, as asked
        # still the notebook's own kernel: the Jupyter Server restarted it in place
        listed = await client.call_tool("list_notebooks", {})
        entry = next(e for e in listed.structured_content["kernels"] if notebook in e["notebooks"])
        assert entry["kernel_id"] == restarted.structured_content["kernel"]["id"]
        # another kernelspec is the notebook's choice, made where the human sees it
        switched = await client.call_tool("restart", {"notebook": notebook, "kernel_name": "ir"})
        assert switched.is_error and "Change Kernel" in text_of(switched), text_of(switched)
