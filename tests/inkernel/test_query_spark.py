"""The built-in ``query`` tool over an exposed Spark frame, in a real kernel with ``%load_ext nbmcp`` in
``%mcp mode read-only`` (one kernel for the module: Spark takes 10-20 s to start): Spark SQL runs, the parser
differential of issue 19 and JVM/file escapes are refused, the notebook's Spark catalog gains nothing."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import KernelHandle, connect, start_kernel
from tests.inkernel.conftest import server_info
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.timeout(240)]
SECRET_ENV = "NBMCP_INKERNEL_SPARK_SECRET"
SECRET = f"envsecret{uuid.uuid4().hex[:16]}"
SETUP = """
from pyspark.sql import SparkSession
spark = (
    SparkSession.builder.master("local[1]").appName("nbmcp-inkernel-query")
    .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "1")
    .config("spark.driver.memory", "512m").getOrCreate()
)
spark.sparkContext.setLogLevel("OFF")
%load_ext nbmcp
import nbmcp
events = spark.createDataFrame([("Oslo", 1), ("Lima", 2), ("Oslo", 3)], ["city", "n"])
nbmcp.expose(events, "events")
%mcp mode read-only
"""


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[KernelHandle, dict]]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17")
    handle = start_kernel({SECRET_ENV: SECRET, "SPARK_LOCAL_IP": "127.0.0.1"})
    try:
        handle.run(SETUP, timeout=180).raise_for_error()
        yield handle, server_info(handle)
    finally:
        handle.run("spark.stop()", timeout=60)
        handle.shutdown()


async def test_spark_sql_in_read_only_mode(server: tuple[KernelHandle, dict]) -> None:
    kernel, info = server
    tables = kernel.value("[t.name for t in spark.catalog.listTables()]")
    async with connect(info["url"], info["token"]) as client:
        for sql, expected in [
            (
                "SELECT '\\' AS x, ' AS y UNION ALL SELECT value FROM text.`/etc/passwd` --' AS z FROM events",
                "Spark's own parser reads this text differently",
            ),
            (f"SELECT java_method('java.lang.System', 'getenv', '{SECRET_ENV}') FROM events", "java_method()"),
            ("SELECT * FROM events, parquet.`/tmp/x`", "files"),
        ]:
            refused = await client.call_tool("query", {"sql": sql})
            text = text_of(refused)
            assert refused.is_error and expected in text, text
            assert SECRET not in text and "root:x:0:0" not in text
        ran = await client.call_tool(
            "query", {"sql": "WITH o AS (SELECT * FROM events WHERE city = 'Oslo') SELECT sum(n) AS s FROM o"}
        )
        assert not ran.is_error, text_of(ran)
        assert ran.structured_content["engine"] == "spark" and ran.structured_content["rows"] == [{"s": 4}]
    assert kernel.value("[t.name for t in spark.catalog.listTables()]") == tables
