"""The JSONL audit log: the writer on its own, then end to end through a real kernel and SDK client."""

from __future__ import annotations

import json
import os
import stat
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from mcp.types import Implementation

from nbmcp.inkernel.oversight.audit import DEFAULT_NAME, AuditLog, default_path, read_lines
from nbmcp.inkernel.server import CallRecord
from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import server_info, start_server
from tests.mcp_results import text_of

pytestmark = pytest.mark.timeout(90)

TOKEN = "s3cret-token-" + "x" * 30


def record(**overrides: Any) -> CallRecord:
    values: dict[str, Any] = dict(
        time=1_700_000_000.25,
        client="claude-code",
        kind="tool",
        name="fit",
        arguments_digest="0123456789abcdef",
        arguments_size=17,
        duration_ms=3.14159,
        outcome="ok",
    )
    values.update(overrides)
    return CallRecord(**values)


# -- the writer ----------------------------------------------------------------------------------


def test_lines_have_every_field_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(path, server_id="kernel-1", secret=lambda: TOKEN)
    try:
        log(record())
        log(record(kind="resource", name="nbmcp://objects/sales", outcome="error", error="LookupError: no"))
        assert log.flush()
    finally:
        log.close()
    first, second = read_lines(path)
    assert first == {
        "time": "2023-11-14T22:13:20.250Z",
        "ts": 1_700_000_000.25,
        "server": "kernel-1",
        "client": "claude-code",
        "kind": "tool",
        "name": "fit",
        "arguments_sha256": "0123456789abcdef",
        "arguments_size": 17,
        "duration_ms": 3.142,
        "outcome": "ok",
        "error": None,
    }
    assert second["kind"] == "resource" and second["outcome"] == "error" and second["error"] == "LookupError: no"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not log._thread.is_alive()


def test_the_token_is_redacted_even_from_error_text(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, secret=lambda: TOKEN)
    log(record(outcome="error", error=f"ValueError: bad token {TOKEN}", client=f"client-{TOKEN}"))
    log.close()
    text = path.read_text()
    assert TOKEN not in text and "[redacted token]" in text
    assert json.loads(text)["outcome"] == "error"


def test_appends_across_instances_and_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for run in range(2):
        log = AuditLog(path, server_id=f"k{run}")
        for i in range(500):
            log(record(name=f"tool{i}"))
        log.close()  # no flush first: close must still write everything
        assert log.lines_written == 500 and log.errors == 0
    entries = read_lines(path)
    assert len(entries) == 1000
    assert [e["server"] for e in entries[::500]] == ["k0", "k1"]
    assert read_lines(path, last=2)[-1]["name"] == "tool499"


def test_default_path_is_in_the_jupyter_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    assert default_path() == tmp_path / "runtime" / DEFAULT_NAME
    log = AuditLog()
    try:
        assert log.path == tmp_path / "runtime" / DEFAULT_NAME and log.path.exists()
    finally:
        log.close()


def test_the_listener_is_cheap(tmp_path: Path) -> None:
    """What runs on the server's thread per call is a queue put, not a write."""
    log = AuditLog(tmp_path / "audit.jsonl")
    rec = record()
    samples = []
    try:
        for _ in range(2000):
            started = time.perf_counter()
            log(rec)
            samples.append(time.perf_counter() - started)
    finally:
        log.close()
    assert statistics.median(samples) < 50e-6, f"median {statistics.median(samples) * 1e6:.1f} µs per call"
    assert log.lines_written == 2000


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited(kernel: KernelHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("audit") / "calls.jsonl"
    setup = """
@nbmcp.tool
def echo(text: str) -> str:
    return text

@nbmcp.tool
def fail(text: str) -> str:
    raise ValueError(f"refused {text}")

@nbmcp.tool(requires_approval=True)
def risky() -> str:
    return "ran"
"""
    start_server(kernel, setup, config={"audit_log": str(path)})
    return {**server_info(kernel, "server_id"), "path": path}


def flushed_lines(kernel: KernelHandle, path: Path) -> list[dict[str, Any]]:
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().audit.flush()")
    return read_lines(path)


@pytest.mark.anyio
async def test_every_call_is_logged_without_the_token(audited: dict[str, Any], kernel: KernelHandle) -> None:
    token = audited["token"]
    assert kernel.value("str(nbmcp.inkernel.lifecycle.current_server().audit.path)") == str(audited["path"])
    client_info = Implementation(name="audit-test-client", version="1.0")
    async with connect(audited["url"], token, client_info=client_info) as client:
        assert text_of(await client.call_tool("echo", {"text": "hello"})) == "hello"
        # The token in arguments and in a tool's error text must not reach the log.
        assert text_of(await client.call_tool("echo", {"text": token})) == token
        failed = await client.call_tool("fail", {"text": token})
        assert failed.is_error
        denied = await client.call_tool("risky", {})  # no panel open: denied at once
        assert denied.is_error
        await client.read_resource("nbmcp://objects")
    entries = [e for e in flushed_lines(kernel, audited["path"]) if e["client"] == "audit-test-client"]
    assert [(e["kind"], e["name"], e["outcome"]) for e in entries] == [
        ("tool", "echo", "ok"),
        ("tool", "echo", "ok"),
        ("tool", "fail", "error"),
        ("approval", "risky", "denied"),  # the decision (who decided: nobody could be asked, so the panel's no)
        ("tool", "risky", "denied"),
        ("resource", "nbmcp://objects", "ok"),
    ]
    assert entries[3]["decided_by"] == "panel" and "no approval panel" in entries[3]["error"]
    del entries[3]
    for entry in entries:
        assert entry["server"] == audited["server_id"]
        assert len(entry["arguments_sha256"]) == 16 and entry["arguments_size"] >= 2
        assert entry["duration_ms"] >= 0 and entry["time"].endswith("Z")
    assert entries[0]["arguments_sha256"] != entries[1]["arguments_sha256"]  # digests differ with arguments
    assert "ValueError" in entries[2]["error"]
    text = audited["path"].read_text()
    assert token not in text and "hello" not in text  # arguments are digested, never written
    log = kernel.run("%mcp log 5").raise_for_error().stdout
    assert "risky" in log and "denied" in log and str(audited["path"]) in log


@pytest.mark.anyio
async def test_execute_is_always_audited(audited: dict[str, Any], kernel: KernelHandle) -> None:
    kernel.run("%mcp approve all").raise_for_error()
    kernel.run("%mcp mode execute").raise_for_error()
    try:
        async with connect(audited["url"], audited["token"]) as client:
            result = await client.call_tool("execute", {"code": "1 + 1"})
        assert "2" in text_of(result)
    finally:
        kernel.run("%mcp mode tools").raise_for_error()
        kernel.run("%mcp approve ask").raise_for_error()
    last = flushed_lines(kernel, audited["path"])[-1]
    assert (last["kind"], last["name"], last["outcome"]) == ("tool", "execute", "ok")


def test_stopping_the_server_closes_the_log(audited: dict[str, Any], kernel: KernelHandle) -> None:
    kernel.run("_audit = nbmcp.inkernel.lifecycle.current_server().audit").raise_for_error()
    kernel.run("%mcp stop").raise_for_error()
    assert kernel.value("_audit._thread.is_alive()") is False
    before = len(read_lines(audited["path"]))
    kernel.run("%mcp start").raise_for_error()
    assert kernel.value("nbmcp.inkernel.lifecycle.current_server().audit is not _audit")
    assert kernel.value("str(nbmcp.inkernel.lifecycle.current_server().audit.path)") == str(audited["path"])
    assert len(read_lines(audited["path"])) == before  # appended to, never truncated
