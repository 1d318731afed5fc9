"""Codex (npm ``@openai/codex``): ``codex mcp list`` only echoes its config, so the test drives ``codex
app-server`` (JSON-RPC, one object per line on stdio) as an IDE does: ``initialize``, ``thread/start`` (which
starts the MCP servers of ``$CODEX_HOME/config.toml``), ``mcpServerStatus/list`` and ``mcpServer/tool/call``.
No login is needed for any of it."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients import SERVERS, client_env, npm_client
from tests.clients.conftest import Http, InKernel

pytestmark = pytest.mark.timeout(180)


def toml_stdio(name: str, entry: dict[str, Any]) -> str:
    lines = [
        f"[mcp_servers.{name}]",
        f"command = {json.dumps(entry['command'])}",
        f"args = {json.dumps(entry['args'])}",
    ]
    if entry.get("env"):
        pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in entry["env"].items())
        lines.append(f"env = {{ {pairs} }}")
    return "\n".join([*lines, "startup_timeout_sec = 60", ""])


def toml_http(name: str, url: str, token_variable: str) -> str:
    return f'[mcp_servers.{name}]\nurl = {json.dumps(url)}\nbearer_token_env_var = "{token_variable}"\n'


class AppServer:
    """``codex app-server`` on pipes: requests by id, startup notifications kept per server."""

    def __init__(self, codex: Path, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [str(codex), "app-server"],
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.startup: dict[str, dict[str, Any]] = {}
        self.started = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if message.get("method") == "mcpServer/startupStatus/updated":
                with self.started:
                    self.startup[message["params"]["name"]] = message["params"]
                    self.started.notify_all()
            elif "id" in message and "method" not in message:
                self.replies.put(message)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            reply = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            if reply["id"] == self.next_id:
                assert "result" in reply, reply
                return reply["result"]

    def wait_started(self, names: list[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
        """Each server's final startup status (``ready`` or ``failed``)."""
        with self.started:
            self.started.wait_for(
                lambda: all(self.startup.get(n, {}).get("status") in ("ready", "failed") for n in names), timeout
            )
            return dict(self.startup)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def binary() -> Path:  # first: a skip starts no server
    return npm_client("codex")


@pytest.fixture(scope="module")
def codex(
    binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
    serve_stdio: dict[str, Any],
    serve_http: Http,
    inkernel: InKernel,
    jupyter_ext: Http,
) -> Iterator[tuple[AppServer, str]]:
    home = tmp_path_factory.mktemp("codex-home")
    project = home / "project"
    project.mkdir()
    env = client_env(
        home, NBMCP_TOKEN=serve_http.token, KERNEL_TOKEN=inkernel.http.token, JUPYTER_EXT_TOKEN=jupyter_ext.token
    )
    (home / ".codex" / "config.toml").write_text(
        toml_stdio("serve-stdio", serve_stdio)
        + toml_stdio("kernel-bridge", inkernel.bridge)
        + toml_http("serve-http", serve_http.url, "NBMCP_TOKEN")
        + toml_http("kernel-http", inkernel.http.url, "KERNEL_TOKEN")
        + toml_http("jupyter", jupyter_ext.url, "JUPYTER_EXT_TOKEN")
    )
    app = AppServer(binary, env, project)
    try:
        app.request("initialize", {"clientInfo": {"name": "nbmcp-tests", "version": "0"}})
        app.send({"method": "initialized"})
        thread = app.request("thread/start", {})["thread"]["id"]
        yield app, thread
    finally:
        app.close()


@pytest.mark.parametrize("server", SERVERS)
def test_codex_connects_and_lists_tools(codex: tuple[AppServer, str], server: str) -> None:
    app, _ = codex
    status = app.wait_started(SERVERS)
    assert status.get(server, {}).get("status") == "ready", status.get(server)
    listed = {s["name"]: s for s in app.request("mcpServerStatus/list", {})["data"]}
    assert "execute" in listed[server]["tools"]


@pytest.mark.parametrize(
    ("server", "tool", "arguments"),
    [
        ("serve-stdio", "execute", {"code": "6*7"}),
        ("serve-http", "execute", {"code": "6*7"}),
        ("kernel-http", "execute", {"code": "6*7"}),
        ("kernel-bridge", "double", {"x": 21}),
        ("jupyter", "execute", {"code": "6*7"}),
    ],
)
def test_codex_calls_a_tool(
    codex: tuple[AppServer, str], jupyter_ext: Http, server: str, tool: str, arguments: dict[str, Any]
) -> None:
    app, thread = codex
    app.wait_started(SERVERS)
    result = app.request(
        "mcpServer/tool/call", {"server": server, "threadId": thread, "tool": tool, "arguments": arguments}
    )
    assert not result.get("isError"), (result, jupyter_ext.log() if server == "jupyter" else "")
    assert result["content"][0]["text"] == "42", result
