"""`nbmcp config CLIENT`: every printed config starts `nbmcp serve` from a client that does not have this
environment on its PATH (Claude Desktop, an IDE started from the desktop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.mcp_results import text_of
from tests.serve.test_tools import wait_gone

pytestmark = pytest.mark.anyio

BARE_PATH = "/usr/bin:/bin"  # what a desktop app gets: no virtual environment on it


def printed_config(client: str, *extra: str, python: str = sys.executable) -> tuple[dict[str, Any], str]:
    """The JSON `nbmcp config CLIENT` prints, and its stderr note."""
    done = subprocess.run(
        [python, "-m", "nbmcp", "config", client, *extra], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(done.stdout), done.stderr


def entry_of(client: str, config: dict[str, Any]) -> dict[str, Any]:
    if client == "vscode":
        entry = config["servers"]["jupyter"]
        assert entry.pop("type") == "stdio"
        return entry
    return config["mcpServers"]["jupyter"]


async def launch_and_run(entry: dict[str, Any], cwd: Path) -> None:
    """As the client would: the command and args as printed, a PATH without the venv; one execute; close."""
    assert os.path.isabs(entry["command"]), entry
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], env={"PATH": BARE_PATH, **entry.get("env", {})}, cwd=str(cwd)
    )
    async with Client(params) as client:
        assert "execute" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("execute", {"code": "1+1"})
        assert not result.is_error, text_of(result)
        assert result.content[0].text == "2"
        pid = result.structured_content["kernel"]["pid"]
    assert wait_gone(pid), "the kernel outlived the client"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client", ["claude", "vscode", "cursor", "generic"])
async def test_every_printed_config_starts_without_the_venv_on_path(client: str, tmp_path: Path) -> None:
    config, where = printed_config(client, "--", "--no-record")
    entry = entry_of(client, config)
    assert entry["command"] == str(Path(sys.executable).with_name("nbmcp"))  # the installed script
    assert entry["args"] == ["serve", "--no-record"] and "env" not in entry
    assert where.startswith("# ")
    await launch_and_run(entry, tmp_path)


@pytest.fixture(scope="module")
def python_without_the_script(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter that imports nbmcp but has no `nbmcp` script beside it (a pip install --target, a
    conda env with the package on PYTHONPATH...): a second venv that reads this one's site-packages."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_packages, "use-main-venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    assert not python.with_name("nbmcp").exists()
    return str(python)


@pytest.mark.timeout(60)
async def test_without_an_installed_script_the_config_runs_python_dash_m_nbmcp(
    python_without_the_script: str, tmp_path: Path
) -> None:
    config, _ = printed_config("generic", "--", "--no-record", python=python_without_the_script)
    entry = entry_of("generic", config)
    assert entry["command"] == python_without_the_script
    assert entry["args"] == ["-m", "nbmcp", "serve", "--no-record"]
    await launch_and_run(entry, tmp_path)


def test_a_server_url_config_carries_a_token_placeholder_never_the_token() -> None:
    secret = "a-real-token-from-the-shell-0123"
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp", "config", "vscode", "--", "--server-url", "http://127.0.0.1:8888/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "JUPYTER_TOKEN": secret},
    )
    assert secret not in done.stdout + done.stderr
    entry = json.loads(done.stdout)["servers"]["jupyter"]
    assert entry["env"] == {"JUPYTER_TOKEN": "<your Jupyter token>"}
    assert "own environment" in done.stderr


def test_a_given_server_token_goes_into_the_env_block_not_the_command_line() -> None:
    # a Hub token given to `nbmcp config`: in the client's env block (ps shows a command line to every user)
    url = "https://hub.example.org/user/alice/"
    for given in (["--server-token", "secret-hub-token"], ["--server-token=secret-hub-token"]):
        config, stderr = printed_config("claude", "--", "--server-url", url, *given)
        server = config["mcpServers"]["jupyter"]
        assert "secret-hub-token" not in json.dumps(server["args"]) and "--server-token" not in server["args"]
        assert server["env"] == {"JUPYTER_TOKEN": "secret-hub-token"}
        assert server["args"][-2:] == ["--server-url", url]
        assert "env block" in stderr
    _, hub_note = printed_config("claude", "--", "--server-url", url)
    assert "JupyterHub API token with the scope access:servers!user=alice" in hub_note


@pytest.mark.parametrize(
    "argv",
    [
        ["--name", "lab", "claude", "--no-record"],
        ["claude", "--name", "lab", "--no-record"],
        ["claude", "--no-record", "--name=lab"],
        ["claude", "--name", "lab", "--", "--no-record"],
    ],
)
def test_config_options_may_come_after_the_client_name(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp", "config", *argv], capture_output=True, text=True, check=True, timeout=60
    )
    (name, entry), *others = json.loads(done.stdout)["mcpServers"].items()
    assert (name, others) == ("lab", []), done.stdout
    assert entry["args"] == ["serve", "--no-record"], entry  # --name is config's own, never serve's
    assert "claude mcp add-json lab" in done.stderr


def test_config_name_without_a_value_says_what_to_pass() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp", "config", "claude", "--name"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "--name needs a server name" in done.stderr, done
