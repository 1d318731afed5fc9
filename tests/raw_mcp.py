"""Raw JSON-RPC MCP clients for tests that must send what the SDK client never sends: the MCP Inspector 2.12's
handshake (protocol 2025-11-25 with the 2026 tasks extension in its capabilities), over stdio and streamable HTTP.

Only the wire: no session logic beyond the handshake's session id, no retries.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.streams.buffered import BufferedByteReceiveStream

# What the MCP Inspector 2.12 CLI sends (captured from its stdin): a handshake-era version, 2026-era extensions.
INSPECTOR_INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "capabilities": {
        "roots": {"listChanged": True},
        "extensions": {"io.modelcontextprotocol/tasks": {}, "io.modelcontextprotocol/skills": {}},
    },
    "clientInfo": {"name": "inspector-cli", "version": "2.12.0"},
}


class RawSession:
    """Requests and their answers (the JSON-RPC message whose id matches; notifications before it are kept)."""

    def __init__(self) -> None:
        self._next_id = 0
        self.notifications: list[dict[str, Any]] = []
        self.initialize_result: dict[str, Any] = {}

    def _message(self, method: str, params: dict[str, Any] | None, notification: bool = False) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notification:
            self._next_id += 1
            message["id"] = self._next_id
        return message

    async def send(self, message: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole answer: ``{"result": ...}`` or ``{"error": ...}``."""
        answer = await self.send(self._message(method, params))
        assert answer is not None
        return answer

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.send(self._message(method, params, notification=True))

    async def initialize(self, params: dict[str, Any] = INSPECTOR_INITIALIZE) -> dict[str, Any]:
        answer = await self.request("initialize", params)
        assert "result" in answer, answer
        self.initialize_result = answer["result"]
        await self.notify("notifications/initialized")
        return self.initialize_result

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.request("tools/call", {"name": name, "arguments": arguments})


class RawStdio(RawSession):
    def __init__(self, process: anyio.abc.Process) -> None:
        super().__init__()
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self._lines = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> dict[str, Any] | None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(message).encode() + b"\n")
        if "id" not in message:
            return None
        while True:
            received = json.loads(await self._lines.receive_until(b"\n", 50_000_000))
            if received.get("id") == message["id"] and "method" not in received:
                return received
            self.notifications.append(received)


@asynccontextmanager
async def raw_stdio(args: Sequence[str], *, cwd: Path, log: Path) -> AsyncIterator[RawStdio]:
    """``python -m nbmcp.cli ARGS`` as a stdio server (its stderr to ``log``); closing stdin ends it."""
    with open(log, "wb") as stderr:
        process = await anyio.open_process([sys.executable, "-m", "nbmcp.cli", *args], cwd=cwd, stderr=stderr)
        async with process:
            try:
                yield RawStdio(process)
            finally:
                assert process.stdin is not None
                await process.stdin.aclose()
                with anyio.move_on_after(20):
                    await process.wait()
                if process.returncode is None:
                    process.kill()


class RawHTTP(RawSession):
    """Streamable HTTP in the handshake era: the session id and protocol version ride every request after
    ``initialize``; answers come as JSON or as an event stream."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        super().__init__()
        self.http = http
        self.url = url
        self.headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    async def send(self, message: dict[str, Any]) -> dict[str, Any] | None:
        response = await self.http.post(self.url, json=message, headers=self.headers)
        if message.get("method") == "initialize":
            self.headers["Mcp-Session-Id"] = response.headers.get("mcp-session-id", "")
            self.headers["MCP-Protocol-Version"] = message["params"]["protocolVersion"]
        if "id" not in message:
            assert response.status_code in (200, 202), response.text
            return None
        assert response.status_code == 200, response.text
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        for line in response.text.splitlines():
            if not line.startswith("data:") or not line[5:].strip():
                continue
            received = json.loads(line[5:])
            if received.get("id") == message["id"] and "method" not in received:
                return received
            self.notifications.append(received)
        raise AssertionError(f"no answer to request {message['id']} in: {response.text[:2000]}")


@asynccontextmanager
async def raw_http(url: str, token: str | None) -> AsyncIterator[RawHTTP]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=120, trust_env=False) as http:
        session = RawHTTP(http, url)
        try:
            yield session
        finally:
            if session.headers.get("Mcp-Session-Id"):
                await http.delete(url, headers=session.headers)


def texts(answer: dict[str, Any]) -> list[str]:
    """The text blocks of a ``tools/call`` answer (which must be a result, not an error)."""
    assert "result" in answer, answer
    return [b["text"] for b in answer["result"].get("content", []) if b.get("type") == "text"]
