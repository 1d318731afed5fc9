"""Fuzzing the servers' front doors with hypothesis-made JSON-RPC traffic.

Random methods, params, ids, nesting, sizes, batches, truncated JSON and raw bytes go to the in-kernel
server and to ``nbmcp serve`` over HTTP (both protocol eras) and stdio. Every request must get a well-formed
JSON-RPC reply or a documented HTTP status (never a 5xx, never a hung connection, never an error code 0),
the server must keep serving a real SDK client afterwards, and its memory must stay bounded.

The examples are derandomized so that CI is repeatable; ``stress/fuzz.py`` runs the same strategies with
many more random examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KernelHandle, free_port, start_kernel
from tests.serve.test_run_http import ServeProcess

pytestmark = pytest.mark.timeout(300)

TOKEN = "fuzz-token-" + "f" * 24
EXAMPLES = int(os.environ.get("NBMCP_FUZZ_EXAMPLES", "40"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("NBMCP_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# HTTP statuses the streamable HTTP transport documents for requests it refuses.
REFUSALS = {400, 404, 405, 406, 413, 415, 422}

METHODS = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
]
# No tool that runs code or writes files: the fuzzer must not do by chance what an owner has to allow.
SAFE_TOOLS = [
    "list_objects",
    "describe_object",
    "read_rows",
    "double",
    "list_variables",
    "inspect_variable",
    "interrupt",
    "notebook_read",
    "no_such_tool",
]
URIS = [
    "nbmcp://objects",
    "nbmcp://objects/frame",
    "nbmcp://objects/frame/rows/0/5",
    "nbmcp://objects/frame/rows/-1/99999999999",
    "nbmcp://objects/frame/arrow",
    "nbmcp://objects/../../etc/passwd",
    "file:///etc/passwd",
    "nbmcp://nothing",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
deep_nesting = st.integers(min_value=1, max_value=3000).map(lambda n: json.loads("[" * n + "]" * n) if n < 900 else {})
params = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(SAFE_TOOLS) | st.text(max_size=12), "arguments": json_values}),
    st.fixed_dictionaries({"uri": st.sampled_from(URIS) | st.text(max_size=30)}),
    st.fixed_dictionaries(
        {
            "ref": st.fixed_dictionaries(
                {"type": st.sampled_from(["ref/resource", "ref/prompt", "x"]), "uri": st.sampled_from(URIS)}
            ),
            "argument": st.fixed_dictionaries({"name": st.text(max_size=8), "value": st.text(max_size=8)}),
        }
    ),
    st.fixed_dictionaries({"level": st.sampled_from(["debug", "warning", "loud", ""])}),
    st.fixed_dictionaries({"_meta": json_values}),
    json_values,
    deep_nesting,
)
ids = (
    st.integers(min_value=-(2**63), max_value=2**63)
    | st.text(max_size=12)
    | st.none()
    | st.floats(allow_nan=False)
    | st.lists(st.integers(), max_size=2)
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", ""]))}
    message["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=20))
    if draw(st.booleans()):
        message["params"] = draw(params)
    if draw(st.integers(0, 3)):  # mostly requests, sometimes notifications
        message["id"] = draw(ids)
    for key in draw(st.lists(st.sampled_from(["jsonrpc", "method"]), max_size=1)):
        message.pop(key)
    return message


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["message", "message", "message", "batch", "truncated", "bytes", "big", "empty"]))
    if kind == "message":
        return json.dumps(draw(messages())).encode()
    if kind == "batch":
        return json.dumps(draw(st.lists(messages(), max_size=3))).encode()
    if kind == "truncated":
        text = json.dumps(draw(messages()))
        return text[: draw(st.integers(0, max(0, len(text) - 1)))].encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "big":
        message = draw(messages())
        message["params"] = {"padding": "x" * draw(st.integers(10_000, 300_000))}
        return json.dumps(message).encode()
    return b""


def well_formed_request(message: Any) -> bool:
    """A JSON-RPC 2.0 request every server must answer (with a result or an error)."""
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and not message["method"].startswith("notifications/")
        and type(message.get("id")) in (int, str)
        and isinstance(message.get("params", {}), dict)
    )


def check_reply(reply: Any) -> None:
    """A JSON-RPC message from the server: a response (result xor error with a valid code) or a notification."""
    assert isinstance(reply, dict), reply
    assert reply.get("jsonrpc") == "2.0", reply
    if "method" in reply:
        return
    assert ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error.get("code"), int) and error["code"] != 0, reply
        assert isinstance(error.get("message"), str), reply


def replies_of(response: httpx.Response) -> list[Any]:
    kind = response.headers.get("content-type", "")
    if not response.content:
        return []
    if kind.startswith("text/event-stream"):
        found = []
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                found.append(json.loads(line[5:]))
        return found
    if kind.startswith("application/json"):
        data = response.json()
        return data if isinstance(data, list) else [data]
    return []


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


class HttpTarget:
    """Raw POSTs to an MCP endpoint, in the handshake era (with a session) or the 2026 era (without)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30, trust_env=False)
        self.base = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        }
        response = self.http.post(url, json=init, headers=self.base)
        assert response.status_code == 200, response.text
        self.session = {
            **self.base,
            "mcp-session-id": response.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-11-25",
        }
        self.modern = {**self.base, "mcp-protocol-version": "2026-07-28"}

    def send(self, body: bytes, era: str) -> None:
        headers = self.session if era == "handshake" else self.modern
        response = self.http.post(self.url, content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if response.status_code in REFUSALS:
            if response.headers.get("content-type", "").startswith("application/json"):
                for reply in replies_of(response):
                    check_reply(reply)
            return
        assert response.status_code in (200, 202), (response.status_code, response.text[:500])
        for reply in replies_of(response):
            check_reply(reply)

    def close(self) -> None:
        self.http.close()


async def still_serves(url: str, token: str, tool: str, arguments: dict[str, Any]) -> None:
    from nbmcp.client import connect

    for mode in ("legacy", "auto"):
        async with connect(url, token, mode=mode) as client:
            assert tool in {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result


# -- the in-kernel server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inkernel() -> Iterator[tuple[KernelHandle, str, int]]:
    handle = start_kernel(env={"NBMCP_TOKEN": TOKEN, "NBMCP_PORT": str(free_port())})
    try:
        handle.run("%load_ext nbmcp").raise_for_error()
        handle.run(
            "import nbmcp, os, pyarrow as pa\n"
            "frame = pa.table({'a': list(range(1000)), 'b': [str(i) for i in range(1000)]})\n"
            "nbmcp.expose(frame, 'frame')\n"
            "@nbmcp.tool\n"
            "def double(x: int) -> int:\n"
            "    return 2 * x\n"
        ).raise_for_error()
        url = handle.value("nbmcp.info().url")
        yield handle, url, handle.value("os.getpid()")
    finally:
        handle.shutdown()


@pytest.mark.anyio
@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_the_in_kernel_server_answers_any_traffic(inkernel: tuple[KernelHandle, str, int], era: str) -> None:
    _, url, pid = inkernel
    target = HttpTarget(url, TOKEN)
    before = rss_mib(pid)

    @FUZZ_SETTINGS
    @given(body=bodies())
    def fuzz(body: bytes) -> None:
        target.send(body, era)

    try:
        fuzz()
    finally:
        target.close()
    assert rss_mib(pid) - before < 150
    await still_serves(url, TOKEN, "double", {"x": 21})


# -- nbmcp serve over HTTP --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("fuzz-http"), env={"NBMCP_TOKEN": TOKEN})
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_serve_over_http_answers_any_traffic(serve_http: ServeProcess, era: str) -> None:
    target = HttpTarget(serve_http.url, TOKEN)
    before = rss_mib(serve_http.proc.pid)

    @FUZZ_SETTINGS
    @given(body=bodies())
    def fuzz(body: bytes) -> None:
        target.send(body, era)

    try:
        fuzz()
    finally:
        target.close()
    assert rss_mib(serve_http.proc.pid) - before < 150
    # a sessionless client names its own kernel in the URL (a bare /mcp gives one to sessions only)
    await still_serves(f"{serve_http.url}/k/fuzz", TOKEN, "list_variables", {})


# -- nbmcp serve over stdio -------------------------------------------------------------------------


class StdioServer:
    """``nbmcp serve`` on pipes: lines in, every line out parsed as it arrives."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbmcp.cli", "serve", "--no-record"],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.counter = 0
        init = {
            "jsonrpc": "2.0",
            "id": "init",
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        }
        self.write(json.dumps(init).encode())
        self.wait_for({"init"}, timeout=60)
        self.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def write(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.replace(b"\n", b" ") + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, expected: set[Any], timeout: float = 30) -> list[Any]:
        """Read replies until every id in ``expected`` has one; each line must be a JSON-RPC message."""
        seen: list[Any] = []
        deadline = time.monotonic() + timeout
        while expected:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply to {expected} within {timeout} s (exit code {self.proc.poll()})"
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            reply = json.loads(line)
            check_reply(reply)
            seen.append(reply)
            if "method" not in reply:
                expected.discard(reply.get("id"))
        return seen

    def send(self, body: bytes) -> None:
        self.counter += 1
        probe = f"alive-{self.counter}"
        self.write(body)
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        # MCP has no batches since 2025-06-18: a batch's requests are not owed a reply of their own.
        expected = {decoded["id"]} if well_formed_request(decoded) and decoded["id"] != probe else set()
        # Every well-formed request is answered; then a ping proves the server still reads its input.
        self.write(json.dumps({"jsonrpc": "2.0", "id": probe, "method": "ping"}).encode())
        self.wait_for({*expected, probe})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def test_serve_over_stdio_answers_any_traffic(tmp_path: Path) -> None:
    server = StdioServer(tmp_path)
    try:
        before = rss_mib(server.proc.pid)

        @FUZZ_SETTINGS
        @given(body=bodies())
        def fuzz(body: bytes) -> None:
            server.send(body)

        fuzz()
        assert server.proc.poll() is None, "nbmcp serve exited"
        assert rss_mib(server.proc.pid) - before < 150
        server.write(json.dumps({"jsonrpc": "2.0", "id": "last", "method": "tools/list"}).encode())
        (reply,) = [r for r in server.wait_for({"last"}) if r.get("id") == "last"]
        assert any(t["name"] == "list_variables" for t in reply["result"]["tools"])
    finally:
        server.close()
