"""An R kernel (IRkernel) explored like a Python one: `nbmcp serve --kernel-name ir` over stdio, the SDK client.

One kernel for the module. Skipped when the `ir` kernelspec is not installed
(`apt-get install r-cran-irkernel r-cran-data.table r-cran-tibble r-cran-dbplyr r-cran-rsqlite`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.mcp_results import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        "ir" not in KernelSpecManager().find_kernel_specs(),
        reason="no `ir` kernelspec (IRkernel): apt-get install r-cran-irkernel",
    ),
]

# R objects of every kind the R adapter handles, made once for the module.
SETUP = r"""
suppressMessages({library(tibble); library(data.table)})
df <- data.frame(x = 1:20, y = letters[1:20], when = as.Date("2024-01-01") + 0:19)
df$y[3] <- NA
tb <- tibble(id = 1:5, tag = c("a", "b", "a", "c", "a"))
dt <- data.table(k = c("p", "q", "r"), v = c(1.5, 2.5, 3.5))
mat <- matrix(1:12, nrow = 4, dimnames = list(NULL, c("a", "b", "c")))
fac <- factor(c("lo", "hi", "lo", "mid"))
lst <- list(alpha = 1, beta = "two", gamma = 1:3)
vec <- seq(0.5, 50, by = 0.5)
cat("ready\n")
"""

# A dbplyr table over SQLite with 2M rows, and a connection that logs each statement it is sent: what the
# database was asked is observable, not guessed from timings.
SQL_SETUP = r"""
suppressMessages({library(DBI); library(dplyr); library(dbplyr)})
setClass("LoggedSQLite", contains = getClass("SQLiteConnection", where = asNamespace("RSQLite")))
sql_log <- character()
setMethod("dbSendQuery", signature("LoggedSQLite", "character"), function(conn, statement, ...) {
  sql_log <<- c(sql_log, statement)
  callNextMethod()
})
raw_con <- dbConnect(RSQLite::SQLite(), ":memory:")
invisible(dbExecute(raw_con, paste(
  "CREATE TABLE big AS WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 1999999)",
  "SELECT i, 'row' || i AS label, i % 7 AS grp FROM s")))
big <- tbl(new("LoggedSQLite", raw_con), "big")
sql_log <- character()
cat("sql ready\n")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("r")


@pytest.fixture(scope="module")
async def client(workdir: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--kernel-name", "ir", "--notebook", str(workdir / "session.ipynb")],
        cwd=str(workdir),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params) as c:
        ready = await c.call_tool("execute", {"code": SETUP, "timeout": 60})
        assert "ready" in text_of(ready), text_of(ready)
        yield c


async def call(client: Client, tool: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    return text_of(result), result.structured_content or {}


async def test_list_variables(client: Client) -> None:
    text, data = await call(client, "list_variables")
    found = {v["name"]: v for v in data["variables"]}
    assert {"df", "tb", "dt", "mat", "fac", "lst", "vec"} <= set(found)
    assert found["df"]["type"] == "data.frame" and found["df"]["shape"] == [20, 3]
    assert found["tb"]["shape"] == [5, 2] and found["dt"]["type"] == "data.table"
    assert found["mat"]["shape"] == [4, 3]
    assert found["fac"] == {"name": "fac", "type": "factor", "len": 4, "repr": found["fac"]["repr"]}
    assert found["vec"]["len"] == 100 and "num [1:100] 0.5 1 1.5" in found["vec"]["repr"]
    assert data["kernel"]["language"] == "R"
    assert "- df: data.frame 20x3 = columns x, y, when" in text
    # nbmcp's own probe is out of the user's way: not a variable, not in ls()
    assert not any(name.startswith(".nbmcp") or name == "nbmcp" for name in found)


async def test_inspect_a_data_frame(client: Client) -> None:
    text, d = await call(client, "inspect_variable", name="df")
    assert d["kind"] == "frame" and d["frame_kind"] == "data.frame" and d["shape"] == [20, 3]
    assert d["columns"] == [
        {"name": "x", "dtype": "integer"},
        {"name": "y", "dtype": "character"},
        {"name": "when", "dtype": "Date"},
    ]
    assert d["total_rows"] == 20 and d["count_capped"] is False and d["memory_bytes"] > 0
    assert d["head"][0] == {"x": 1, "y": "a", "when": "2024-01-01"} and d["head"][2]["y"] is None
    profile = {c["name"]: c for c in d["profile"]["columns"]}
    assert profile["x"]["min"] == 1 and profile["x"]["max"] == 20 and profile["x"]["mean"] == 10.5
    assert profile["y"]["nulls"] == 1 and profile["when"]["max"] == "2024-01-20"
    assert "columns: x (integer), y (character), when (Date)" in text and "profile:" in text


@pytest.mark.parametrize(
    ("name", "columns", "rows"),
    [
        ("df", ["y", "x"], [{"y": None, "x": 3}, {"y": "d", "x": 4}]),
        ("tb", None, [{"id": 3, "tag": "a"}, {"id": 4, "tag": "c"}]),
        ("dt", ["v"], [{"v": 3.5}]),
        ("mat", ["c", "a"], [{"c": 11, "a": 3}, {"c": 12, "a": 4}]),
        ("fac", None, [{"index": 3, "value": "lo"}, {"index": 4, "value": "mid"}]),
        ("lst", ["name", "value"], [{"name": "gamma", "value": "int [1:3] 1 2 3"}]),
        ("vec", None, [{"index": 3, "value": 1.5}, {"index": 4, "value": 2}]),
    ],
)
async def test_read_rows_at_an_offset(client: Client, name: str, columns: list[str] | None, rows: list[Any]) -> None:
    arguments: dict[str, Any] = {"name": name, "offset": 2, "limit": 2}
    if columns:
        arguments["columns"] = columns
    text, data = await call(client, "read_rows", **arguments)
    assert data["rows"] == rows
    assert data["offset"] == 2
    if columns:
        assert data["columns"] == columns
    assert text.startswith(f"rows 2-{1 + len(rows)} of ")


async def test_each_kind_is_described(client: Client) -> None:
    _, tb = await call(client, "inspect_variable", name="tb")
    assert tb["frame_kind"] == "tibble" and tb["columns"][1] == {"name": "tag", "dtype": "character"}
    top = next(c for c in tb["profile"]["columns"] if c["name"] == "tag")["top"]
    assert top[0] == {"value": "a", "count": 3}
    _, dt = await call(client, "inspect_variable", name="dt")
    assert dt["frame_kind"] == "data.table" and dt["shape"] == [3, 2]
    _, mat = await call(client, "inspect_variable", name="mat")
    assert mat["frame_kind"] == "matrix" and [c["name"] for c in mat["columns"]] == ["a", "b", "c"]
    _, fac = await call(client, "inspect_variable", name="fac")
    assert fac["kind"] == "value" and fac["dtype"] == "factor" and fac["levels"] == ["hi", "lo", "mid"]
    _, lst = await call(client, "inspect_variable", name="lst")
    assert lst["kind"] == "mapping" and lst["keys"] == ["alpha", "beta", "gamma"]
    await client.call_tool("execute", {"code": "add <- function(a, b = 2) a + b"})
    _, fn = await call(client, "inspect_variable", name="add")
    assert fn["kind"] == "callable" and fn["signature"] == "add(a, b = 2)"


async def test_unknown_names_and_columns_say_what_exists(client: Client) -> None:
    result = await client.call_tool("read_rows", {"name": "dff"})
    assert result.is_error
    text = text_of(result)
    assert "object 'dff' not found" in text and "Did you mean: df" in text and "variables: " in text
    result = await client.call_tool("read_rows", {"name": "df", "columns": ["nope"]})
    assert result.is_error and "no column 'nope'; the columns are: x, y, when" in text_of(result)
    result = await client.call_tool("read_rows", {"name": "add"})
    assert result.is_error and "add is a function, not a table" in text_of(result)


async def test_a_dbplyr_table_pages_with_limit_offset_never_collecting(client: Client) -> None:
    ready = await client.call_tool("execute", {"code": SQL_SETUP, "timeout": 120})
    assert "sql ready" in text_of(ready), text_of(ready)
    text, data = await call(client, "read_rows", name="big", offset=1_000_000, limit=3, columns=["i", "label"])
    assert data["rows"] == [{"i": 1_000_000 + k, "label": f"row{1_000_000 + k}"} for k in range(3)]
    assert data["count_capped"] is True and data["total_rows"] is None
    assert "more than 1,000,000" in text
    log = await client.call_tool("execute", {"code": "cat(jsonlite::toJSON(sql_log)); sql_log <- character()"})
    statements = json.loads(text_of(log).split("\n")[0])
    # one page query with the database's own LIMIT/OFFSET, one capped count: nothing read the table whole
    assert len(statements) == 2, statements
    assert statements[0].endswith("LIMIT 3 OFFSET 1000000")
    assert "LIMIT 1000001" in statements[1] and statements[1].startswith("SELECT COUNT(*)")
    _, d = await call(client, "inspect_variable", name="big")
    assert d["frame_kind"] == "tbl_sql" and d["shape"] == [None, 3] and "memory_bytes" not in d
    assert d["profile"]["sampled"] is True and d["profile"]["rows_profiled"] == 10_000
    log = await client.call_tool("execute", {"code": "cat(jsonlite::toJSON(sql_log)); sql_log <- character()"})
    assert all(" LIMIT " in s for s in json.loads(text_of(log).split("\n")[0]))


async def test_query_on_r_says_what_to_use_instead(client: Client) -> None:
    result = await client.call_tool("query", {"sql": "SELECT * FROM df"})
    assert result.is_error
    assert "this kernel runs R" in text_of(result) and "read_rows" in text_of(result)


async def test_r_tables_read_like_python_ones(client: Client) -> None:
    result = await client.call_tool("execute", {"code": "data.frame(x = 1:2, y = c('a', NA))"})
    text = text_of(result)
    assert "| x <int> | y <chr> |" in text and "| 2 | NA |" in text and "&lt;" not in text


async def test_an_interrupted_r_cell_is_not_ok(client: Client) -> None:
    started = await client.call_tool(
        "execute", {"code": "cat('sleeping\\n'); Sys.sleep(60); cat('woke\\n')", "background": True}
    )
    task_id = (started.structured_content or {})["task_id"]
    with anyio.fail_after(30):  # the cell runs once its output arrived (polling the task is the client's way)
        while "(tail):\nsleeping" not in text_of(await client.call_tool("task_status", {"task_id": task_id})):
            await anyio.sleep(0.05)
    await call(client, "interrupt")
    result = await client.call_tool("task_result", {"task_id": task_id, "wait": 30})
    text = text_of(result)
    assert result.is_error and "[interrupted" in text and "woke" not in text, text
    assert (result.structured_content or {})["status"] == "interrupted"
    # the kernel and its variables are still there
    _, data = await call(client, "read_rows", name="df", limit=1)
    assert data["rows"][0]["x"] == 1


async def test_an_interrupt_between_cells_does_not_kill_irkernel(client: Client) -> None:
    # IRkernel exits ("Execution halted") on a SIGINT that arrives outside a cell: none is sent to an idle kernel
    text, data = await call(client, "interrupt")
    assert data["status"] == "idle" and "nothing to interrupt" in text
    _, rows = await call(client, "read_rows", name="df", limit=1)
    assert rows["rows"][0]["x"] == 1


async def test_the_session_notebook_reruns_under_the_r_kernel(client: Client, workdir: Path) -> None:
    import nbformat

    await call(client, "execute", code="recorded <- 42")
    path = workdir / "session.ipynb"
    with anyio.fail_after(20):  # the recorder writes once the session is quiet
        while not path.exists() or "recorded <- 42" not in path.read_text(encoding="utf-8"):
            await anyio.sleep(0.1)
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "ir" and nb.metadata.kernelspec.language == "R"
    assert nb.metadata.language_info.name == "R"


async def test_kernelspecs_are_listed_and_a_recorded_session_keeps_its_language(client: Client) -> None:
    text, data = await call(client, "list_kernelspecs")
    specs = {s["name"]: s for s in data["kernelspecs"]}
    assert specs["ir"]["language"] == "R" and specs["python3"]["language"] == "python"
    assert data["current"] == "ir" and "this session runs 'ir'" in text
    refused = await client.call_tool("restart", {"kernel_name": "python3"})
    assert refused.is_error and "--no-record" in text_of(refused) and "R notebook" in text_of(refused)
    unknown = await client.call_tool("restart", {"kernel_name": "cobol"})
    assert unknown.is_error and "no kernelspec 'cobol'" in text_of(unknown)
    _, rows = await call(client, "read_rows", name="df", limit=1)  # nothing was restarted
    assert rows["rows"][0]["x"] == 1


async def test_restart_switches_the_kernelspec(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--no-record"],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params) as python:
        text, data = await call(python, "restart", kernel_name="ir")
        assert data["kernel"]["name"] == "ir" and data["kernel"]["language"] == "R", text
        await call(python, "execute", code="switched <- data.frame(a = 1:3)")
        _, rows = await call(python, "read_rows", name="switched", offset=2)
        assert rows["rows"] == [{"a": 3}]
        _, data = await call(python, "restart", kernel_name="python3")
        assert data["kernel"]["language"] == "python"
        _, listed = await call(python, "list_variables")
        assert listed["variables"] == []


async def test_inspection_waits_for_a_running_r_cell_and_says_so(client: Client) -> None:
    # IRkernel has no subshells: the inspection queues behind the cell (never interrupting it) and says it waited
    started = await client.call_tool(
        "execute", {"code": "cat('working\\n'); Sys.sleep(1.5); finished <- TRUE", "background": True}
    )
    task_id = (started.structured_content or {})["task_id"]
    with anyio.fail_after(30):
        while "(tail):\nworking" not in text_of(await client.call_tool("task_status", {"task_id": task_id})):
            await anyio.sleep(0.05)
    text, data = await call(client, "list_variables")
    assert "no subshells" in data["note"] and "waited" in text
    assert "finished" in {v["name"] for v in data["variables"]}  # it answered after the cell, untouched
    done = await client.call_tool("task_result", {"task_id": task_id, "wait": 30})
    assert (done.structured_content or {})["status"] == "ok", text_of(done)
