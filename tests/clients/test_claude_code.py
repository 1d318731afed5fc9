"""Claude Code (npm ``@anthropic-ai/claude-code``): ``claude mcp add`` with exactly the configs nbmcp prints, then
``claude mcp list`` connects to each server and says so (no login needed). It exits 0 whatever happens: the
assertions are on its lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.clients import SERVERS, bearer, client_env, npm_client, run
from tests.clients.conftest import Http, InKernel

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def claude() -> Path:  # first: a skip starts no server
    return npm_client("claude")


@pytest.fixture(scope="module")
def listed(
    claude: Path,
    tmp_path_factory: pytest.TempPathFactory,
    serve_stdio: dict[str, Any],
    serve_http: Http,
    inkernel: InKernel,
    jupyter_ext: Http,
) -> dict[str, str]:
    """Each server's line of ``claude mcp list``, after adding them as the README says."""
    home = tmp_path_factory.mktemp("claude-home")
    project = home / "project"
    project.mkdir()
    env = client_env(home)
    adds = [
        # `nbmcp config claude` and `%mcp config claude` / `claude-code` print the entry `claude mcp add-json` takes
        ["mcp", "add-json", "serve-stdio", json.dumps(serve_stdio)],
        ["mcp", "add-json", "kernel-bridge", json.dumps(inkernel.bridge)],
        ["mcp", "add-json", "kernel-http", json.dumps(inkernel.http_entry)],
        # the URL `nbmcp serve --transport http` prints, and the extension's, with the header
        [
            "mcp",
            "add",
            "--transport",
            "http",
            "serve-http",
            serve_http.url,
            "--header",
            f"Authorization: {bearer(serve_http.token)}",
        ],
        [
            "mcp",
            "add",
            "--transport",
            "http",
            "jupyter",
            jupyter_ext.url,
            "--header",
            f"Authorization: {bearer(jupyter_ext.token)}",
        ],
        # the check can fail: a wrong token must not show as connected
        ["mcp", "add", "--transport", "http", "wrong-token", serve_http.url, "--header", "Authorization: Bearer wrong"],
    ]
    for args in adds:
        added = run([claude, *args], env=env, cwd=project, timeout=60)
        assert added.returncode == 0, added
    done = run([claude, "mcp", "list"], env=env, cwd=project)
    lines = {m[1]: m[2] for m in re.finditer(r"^([\w-]+): (.*)$", done.stdout, re.MULTILINE)}
    assert lines, done
    return lines


@pytest.mark.parametrize("server", SERVERS)
def test_claude_mcp_list_connects(listed: dict[str, str], server: str) -> None:
    assert listed[server].endswith("✔ Connected"), listed


def test_a_wrong_token_is_not_connected(listed: dict[str, str]) -> None:
    assert "wrong-token" in listed and not listed["wrong-token"].endswith("✔ Connected"), listed
