"""`nbmcp serve` sends a cell's stderr and warnings as log messages to a client that asked for logs (both eras),
and keeps them in the result for one that did not."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.mcp_results import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:The logging capability is deprecated"),
]

CELL = "import sys, warnings\nprint('to stdout')\nprint('plain stderr', file=sys.stderr)\nwarnings.warn('old api')"


def serve(tmp_path: Path, mode: str, **options: Any) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nbmcp.cli", "serve", "--notebook", str(tmp_path / f"{mode}.ipynb")],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Client(params, mode=mode, **options)


async def test_handshake_era_stderr_becomes_log_messages_after_set_level(tmp_path: Path) -> None:
    logs: list[tuple[str, str, str | None]] = []

    async def on_log(params) -> None:
        logs.append((params.level, params.data, params.logger))

    async with serve(tmp_path, "legacy", logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None
        before = text_of(await client.call_tool("execute", {"code": CELL}))
        assert "plain stderr" in before and "old api" in before and logs == []  # no logs asked: as before

        await client.set_logging_level("info")
        after = text_of(await client.call_tool("execute", {"code": CELL}))
        assert "to stdout" in after and "plain stderr" not in after and "old api" not in after
        assert [(level, logger) for level, _, logger in logs] == [
            ("info", "kernel.stderr"),
            ("warning", "kernel.stderr"),
        ]
        assert "plain stderr" in logs[0][1] and "UserWarning: old api" in logs[1][1]

        logs.clear()
        await client.set_logging_level("warning")
        await client.call_tool("execute", {"code": CELL})
        assert [level for level, _, _ in logs] == ["warning"]


async def test_modern_era_per_request_level(tmp_path: Path) -> None:
    logs: list[tuple[str, str]] = []

    async def on_log(params) -> None:
        logs.append((params.level, params.data))

    async with serve(tmp_path, "2026-07-28", logging_callback=on_log, log_level="warning") as client:
        result = text_of(await client.call_tool("execute", {"code": CELL}))
        assert "to stdout" in result and "old api" not in result and "plain stderr" not in result
        assert [level for level, _ in logs] == ["warning"] and "old api" in logs[0][1]
