"""`nbmcp serve` over stdio: one message is capped at 4 MiB like over HTTP, bad lines get a JSON-RPC error."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmcp.transport.stdio import MAX_MESSAGE_BYTES


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RawStdioServer:
    """`nbmcp serve` (or another nbmcp stdio command) driven line by line over its stdin/stdout (the SDK client
    cannot send a bad line)."""

    def __init__(self, tmp: Path, command: tuple[str, ...] = ("serve", "--no-record")) -> None:
        cmd = [sys.executable, "-m", "nbmcp.cli", *command]
        self.proc = subprocess.Popen(
            cmd, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        self.replies: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.arrived:
                self.replies.append(json.loads(line))
                self.arrived.notify_all()

    def send(self, payload: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(payload)
        self.proc.stdin.flush()

    def request(self, message: dict[str, Any]) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def reply(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        with self.arrived:
            found = self.arrived.wait_for(lambda: next((r for r in self.replies if predicate(r)), None), timeout)
        assert found, f"no such reply within {timeout} s; got {self.replies}"
        self.replies.remove(found)
        return found

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # end of stdin: serve shuts its kernel down and exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawStdioServer]:
    proc = RawStdioServer(tmp_path_factory.mktemp("stdio"))
    try:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        proc.request({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert "result" in proc.reply(lambda r: r.get("id") == 0)
        proc.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield proc
    finally:
        proc.close()


def call(server: RawStdioServer, request_id: int, code: str) -> dict[str, Any]:
    params = {"name": "execute", "arguments": {"code": code}}
    server.request({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
    return server.reply(lambda r: r.get("id") == request_id)


@pytest.mark.timeout(120)
def test_a_20_mb_line_gets_a_parse_error_and_memory_stays_bounded(server: RawStdioServer) -> None:
    assert call(server, 1, "6 * 7")["result"]["content"][0]["text"] == "42"
    before = rss_mb(server.proc.pid)
    chunk = b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"code": "' + b"x" * (1 << 20)
    server.send(chunk + b"x" * (19 << 20) + b'"}}\n')
    error = server.reply(lambda r: "error" in r)
    assert error["error"]["code"] == -32700 and error["id"] is None
    assert str(MAX_MESSAGE_BYTES) in error["error"]["message"]
    # the server lives on, and the next request is answered
    assert call(server, 3, "40 + 2")["result"]["content"][0]["text"] == "42"
    grown = rss_mb(server.proc.pid) - before
    assert grown < 3 * MAX_MESSAGE_BYTES / 2**20, f"serve grew by {grown:.0f} MB reading a 20 MB line"


@pytest.mark.timeout(60)
def test_garbage_and_non_jsonrpc_lines_are_answered(server: RawStdioServer) -> None:
    server.send(b"this is not json\n")
    assert server.reply(lambda r: "error" in r)["error"]["code"] == -32700
    server.send(b'{"jsonrpc": "2.0", "id": 7, "method": 12}\n')
    invalid = server.reply(lambda r: "error" in r)
    assert invalid["id"] == 7 and invalid["error"]["code"] == -32600
    server.send(b"\xff\xfe\x00 binary\n\n")
    assert server.reply(lambda r: "error" in r)["error"]["code"] == -32700
    # a message just under the limit is still served
    code = "len('" + "y" * (MAX_MESSAGE_BYTES - 4096) + "')"
    assert call(server, 8, code)["result"]["content"][0]["text"] == str(MAX_MESSAGE_BYTES - 4096)


DEEP_LINE = b"[" * 1200 + b"]" * 1200 + b"\n"  # 2.4 KB; json.loads raises RecursionError on it


def check_deep_lines_are_parse_errors(proc: RawStdioServer) -> None:
    """Initialize, deeply nested lines before its answer, then tools/list: each deep line gets -32700, the
    initialize and tools/list get their answers, and the process lives on."""
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    proc.request({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    proc.send(DEEP_LINE)
    nested = {"jsonrpc": "2.0", "id": 5, "method": "ping", "params": {"x": "@"}}  # valid JSON-RPC, 240 levels
    proc.send(json.dumps(nested).replace('"@"', "[" * 240 + "]" * 240).encode() + b"\n")
    assert "result" in proc.reply(lambda r: r.get("id") == 0)
    proc.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
    proc.request({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    for _ in range(2):
        error = proc.reply(lambda r: "error" in r)
        assert error["error"]["code"] == -32700 and error["id"] is None, error
        assert "nested more than 200 levels" in error["error"]["message"]
    assert proc.reply(lambda r: r.get("id") == 1)["result"]["tools"]
    assert proc.proc.poll() is None


@pytest.mark.timeout(60)
def test_deeply_nested_json_is_a_parse_error_and_serve_lives_on(tmp_path: Path) -> None:
    proc = RawStdioServer(tmp_path)
    try:
        check_deep_lines_are_parse_errors(proc)
    finally:
        proc.close()
    assert proc.proc.returncode == 0
