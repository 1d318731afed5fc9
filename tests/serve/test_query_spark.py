"""``query`` in ``nbmcp serve --read-only`` over a kernel holding a Spark frame (real local SparkSession in a real
kernel, attached with ``--existing``; one kernel for the module, Spark takes 10-20 s to start): the parser
differential of issue 19 is refused through the MCP tool, Spark SQL still runs, and the engine's Spark half is
installed in the kernel beside it (``<engine>_spark_sql``, ``<engine>_spark_bounds``)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbmcp.serve.kernel_tools.query import sql_module
from tests.conftest import KernelHandle, connect, start_kernel
from tests.mcp_results import text_of
from tests.serve.test_run_http import TOKEN, ServeProcess

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.timeout(240)]
SECRET_ENV = "NBMCP_SERVE_SPARK_SECRET"
SECRET = f"envsecret{uuid.uuid4().hex[:16]}"
MARKER = f"filemarker{uuid.uuid4().hex[:16]}"
SETUP = """
from pyspark.sql import SparkSession
spark = (
    SparkSession.builder.master("local[1]").appName("nbmcp-serve-query")
    .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "1")
    .config("spark.driver.memory", "512m").getOrCreate()
)
spark.sparkContext.setLogLevel("OFF")
events = spark.createDataFrame([("Oslo", 1), ("Lima", 2), ("Oslo", 3)], ["city", "n"])
"""


@pytest.fixture(scope="module")
def kernel_with_spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KernelHandle, Path]]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17")
    marker = tmp_path_factory.mktemp("secret") / "secret.txt"
    marker.write_text(MARKER + "\n")
    handle = start_kernel({SECRET_ENV: SECRET, "SPARK_LOCAL_IP": "127.0.0.1"})
    try:
        handle.run(SETUP, timeout=180).raise_for_error()
        yield handle, marker
    finally:
        handle.run("spark.stop()", timeout=60)
        handle.shutdown()


@pytest.fixture(scope="module")
def server(kernel_with_spark: tuple[KernelHandle, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kernel, _ = kernel_with_spark
    proc = ServeProcess(tmp_path_factory.mktemp("serve"), "--existing", kernel.km.connection_file, "--read-only")
    try:
        yield proc.url
    finally:
        proc.stop()


async def test_the_parser_differential_is_refused_through_the_tool(
    server: str, kernel_with_spark: tuple[KernelHandle, Path]
) -> None:
    kernel, marker = kernel_with_spark
    tables = kernel.value("[t.name for t in spark.catalog.listTables()]")
    async with connect(server, TOKEN) as client:
        for path in ("/etc/passwd", marker):
            attack = f"SELECT '\\' AS x, ' AS y UNION ALL SELECT value FROM text.`{path}` --' AS z FROM events"
            refused = await client.call_tool("query", {"sql": attack})
            text = text_of(refused)
            assert refused.is_error and "Spark's own parser reads this text differently" in text, text
            assert MARKER not in text and "root:x:0:0" not in text
        ran = await client.call_tool(
            "query", {"sql": "SELECT city, sum(n) AS total FROM events GROUP BY city ORDER BY 1"}
        )
        assert not ran.is_error, text_of(ran)
        data = ran.structured_content
        assert data["engine"] == "spark" and data["rows"] == [
            {"city": "Lima", "total": 2},
            {"city": "Oslo", "total": 4},
        ]
        for sql, expected in [
            (f"SELECT reflect('java.lang.System', 'getenv', '{SECRET_ENV}') AS v FROM events", "reflect()"),
            ("SELECT TRANSFORM(city) USING 'cat /etc/passwd' AS (x) FROM events", "TRANSFORM ... USING"),
            (f"SELECT * FROM events JOIN text.`{marker}` ON true", "files"),
        ]:
            refused = await client.call_tool("query", {"sql": sql})
            text = text_of(refused)
            assert refused.is_error and expected in text and "exposed Spark frames (events)" in text, text
            assert SECRET not in text and MARKER not in text
    assert kernel.value("[t.name for t in spark.catalog.listTables()]") == tables
    engine = sql_module()  # installed with the engine, as its modules
    modules = kernel.value(f"sorted(n for n in __import__('sys').modules if n.startswith({engine!r}))")
    assert {f"{engine}_spark_sql", f"{engine}_spark_bounds"} <= set(modules), modules
