"""The official MCP Inspector 2.12 CLI (npm ``@modelcontextprotocol/inspector``) against every nbmcp server, each
named in one ``mcpServers`` file made of the configs nbmcp prints: ``tools/list``, ``tools/call`` (``execute``, a
user tool, ``query``), ``resources/read`` of a page of rows and ``prompts/get``. Its exit code is meaningful
(1 error, 5 a tool's isError), and ``--format json`` prints one JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.clients import SERVERS, Ran, client_env, npm_client, run
from tests.clients.conftest import Http, InKernel

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def binary() -> Path:  # first: a skip starts no server
    return npm_client("mcp-inspector")


@pytest.fixture(scope="module")
def inspector(
    binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
    serve_stdio: dict[str, Any],
    serve_http: Http,
    inkernel: InKernel,
    jupyter_ext: Http,
) -> Any:
    home = tmp_path_factory.mktemp("inspector-home")
    config = home / "mcp.json"
    servers = {
        "serve-stdio": serve_stdio,
        "serve-http": serve_http.entry(),
        "kernel-http": inkernel.http_entry,
        "kernel-bridge": inkernel.bridge,
        "jupyter": jupyter_ext.entry(),
    }
    config.write_text(json.dumps({"mcpServers": servers}))

    def call(server: str, *args: str) -> tuple[dict[str, Any], Ran]:
        cmd = [binary, "--cli", "--format", "json", "--config", config, "--server", server, *args]
        ran = run(cmd, env=client_env(home), cwd=home)
        lines = [line for line in ran.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no JSON answer from the Inspector:\n{ran}"
        return json.loads(lines[-1]), ran

    return call


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


EXPECTED_TOOLS = {
    "serve-stdio": {"execute", "interrupt", "restart", "list_variables", "read_rows", "query"},
    "serve-http": {"execute", "interrupt", "restart", "list_variables", "read_rows", "query"},
    "kernel-http": {"double", "execute", "list_objects", "read_rows", "query"},
    "kernel-bridge": {"double", "execute", "list_objects", "read_rows", "query"},
    "jupyter": {"list_notebooks", "execute", "list_variables"},
}


@pytest.mark.parametrize("server", SERVERS)
def test_tools_list(inspector: Any, server: str) -> None:
    answer, ran = inspector(server, "--method", "tools/list")
    assert ran.returncode == 0, ran
    assert EXPECTED_TOOLS[server] <= {t["name"] for t in answer["result"]["tools"]}, ran


@pytest.mark.parametrize("server", SERVERS)
def test_execute(inspector: Any, server: str) -> None:
    answer, ran = inspector(server, "--method", "tools/call", "--tool-name", "execute", "--tool-arg", "code=6*7")
    assert ran.returncode == 0, ran
    assert not answer["result"].get("isError") and answer["result"]["content"][0]["text"] == "42", ran


@pytest.mark.parametrize("server", SERVERS)
def test_execute_in_the_modern_era(inspector: Any, server: str) -> None:
    # The 2026 era, where the Inspector declares the tasks extension on every request yet cannot take a task
    # result ("Unsupported result type 'task'"): a call that finishes within the grace answers inline.
    args = ["--protocol-era", "modern", "--method", "tools/call", "--tool-name", "execute", "--tool-arg", "code=6*7"]
    answer, ran = inspector(server, *args)
    assert ran.returncode == 0, ran
    assert not answer["result"].get("isError") and answer["result"]["content"][0]["text"] == "42", ran


@pytest.mark.parametrize("server", ["kernel-http", "kernel-bridge"])
def test_a_user_tool(inspector: Any, server: str) -> None:
    args = ["--method", "tools/call", "--tool-name", "double", "--tool-args-json", '{"x": 21}']
    answer, ran = inspector(server, *args)
    assert ran.returncode == 0 and text_of(answer["result"]) == "42", ran
    assert answer["result"]["structuredContent"] == {"result": 42}


def test_a_nan_in_structured_output_meets_the_published_schema(inspector: Any) -> None:
    # The Inspector checks structuredContent against the tool's outputSchema: a NaN mean must come out as a value
    # the schema allows (null) or as a tool error naming the field, never as content that breaks the client.
    answer, ran = inspector("kernel-http", "--method", "tools/call", "--tool-name", "empty_stats")
    assert ran.returncode in (0, 5), ran  # 5: the tool's own isError
    if ran.returncode == 0:
        assert answer["result"]["structuredContent"] == {"mean": None, "count": 0}, ran
    else:
        assert "mean" in text_of(answer["result"]), ran


@pytest.mark.parametrize(
    ("server", "sql", "expected"),
    [("serve-stdio", "SELECT 6*7 AS answer", 42), ("kernel-http", "SELECT max(total) AS answer FROM orders", 58)],
)
def test_query(inspector: Any, server: str, sql: str, expected: int) -> None:
    answer, ran = inspector(server, "--method", "tools/call", "--tool-name", "query", "--tool-arg", f"sql={sql}")
    assert ran.returncode == 0, ran
    assert answer["result"]["structuredContent"]["rows"] == [{"answer": expected}], ran


@pytest.mark.parametrize("server", ["kernel-http", "kernel-bridge"])
def test_resources_read_of_a_page(inspector: Any, server: str) -> None:
    answer, ran = inspector(server, "--method", "resources/read", "--uri", "nbmcp://objects/orders/rows/28/5")
    assert ran.returncode == 0, ran
    page = json.loads(answer["result"]["contents"][0]["text"])
    assert [row["id"] for row in page["rows"]] == [28, 29], ran


def test_prompts_get(inspector: Any) -> None:
    args = ["--method", "prompts/get", "--prompt-name", "explain_column", "--prompt-args", "column=total"]
    answer, ran = inspector("kernel-bridge", *args)
    assert ran.returncode == 0, ran
    (message,) = answer["result"]["messages"]
    assert message["content"]["text"] == "Explain the column total of the orders frame.", ran


def test_the_config_files_are_the_printed_ones(inspector: Any, serve_stdio: dict[str, Any], inkernel: InKernel) -> None:
    # What the user pastes: `nbmcp config claude` launches serve by absolute path; `%mcp config claude` launches
    # the bridge by kernel id and carries no token; `%mcp config claude-code` carries the URL and the header.
    assert Path(serve_stdio["command"]).is_absolute() and serve_stdio["args"] == ["serve"]
    assert inkernel.bridge["args"][-2:] == ["--kernel-id", inkernel.kernel.kernel_id]
    assert inkernel.http.token not in json.dumps(inkernel.bridge)
    assert inkernel.http_entry == inkernel.http.entry()
