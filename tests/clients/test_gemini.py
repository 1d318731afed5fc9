"""Gemini CLI (npm ``@google/gemini-cli``): ``gemini mcp list`` connects to every server named in the project's
``.gemini/settings.json`` (stdio entries as nbmcp prints them, HTTP ones as ``httpUrl`` with the header). It
exits 0 whatever happens and prints to stderr: the assertions are on its ``- Connected`` lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.clients import SERVERS, bearer, client_env, npm_client, run
from tests.clients.conftest import Http, InKernel

pytestmark = pytest.mark.timeout(180)


def http_entry(target: Http, token_variable: str) -> dict[str, Any]:
    # Gemini expands $VARIABLES in settings: the token stays out of the file.
    return {"httpUrl": target.url, "headers": {"Authorization": bearer(f"${token_variable}")}}


@pytest.fixture(scope="module")
def gemini() -> Path:  # first: a skip starts no server
    return npm_client("gemini")


@pytest.fixture(scope="module")
def listed(
    gemini: Path,
    tmp_path_factory: pytest.TempPathFactory,
    serve_stdio: dict[str, Any],
    serve_http: Http,
    inkernel: InKernel,
    jupyter_ext: Http,
) -> dict[str, str]:
    home = tmp_path_factory.mktemp("gemini-home")
    project = home / "project"
    (project / ".gemini").mkdir(parents=True)
    servers = {
        "serve-stdio": {**serve_stdio, "timeout": 60000},
        "kernel-bridge": {**inkernel.bridge, "timeout": 60000},
        "serve-http": http_entry(serve_http, "NBMCP_TOKEN"),
        "kernel-http": http_entry(inkernel.http, "KERNEL_TOKEN"),
        "jupyter": http_entry(jupyter_ext, "JUPYTER_EXT_TOKEN"),
        "wrong-token": {"httpUrl": serve_http.url, "headers": {"Authorization": "Bearer wrong"}},
    }
    (project / ".gemini" / "settings.json").write_text(json.dumps({"mcpServers": servers}))
    env = client_env(
        home, NBMCP_TOKEN=serve_http.token, KERNEL_TOKEN=inkernel.http.token, JUPYTER_EXT_TOKEN=jupyter_ext.token
    )
    done = run([gemini, "mcp", "list"], env=env, cwd=project)
    lines = {m[1]: m[2] for m in re.finditer(r"^\W*([\w-]+): (.*)$", done.stdout + done.stderr, re.MULTILINE)}
    assert lines, done
    return lines


@pytest.mark.parametrize("server", SERVERS)
def test_gemini_mcp_list_connects(listed: dict[str, str], server: str) -> None:
    assert listed[server].endswith("- Connected"), listed


def test_a_wrong_token_is_not_connected(listed: dict[str, str]) -> None:
    assert "wrong-token" in listed and not listed["wrong-token"].endswith("- Connected"), listed
