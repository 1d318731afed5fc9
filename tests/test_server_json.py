"""``server.json`` (the MCP registry's description of nbmcp) says what the package and the Hub really serve.

Checked against the registry's server.json rules that matter here (schema 2025-12-11: the name's reverse-DNS
pattern, a description of at most 100 characters, a PyPI package with a pinned version and a stdio
transport, streamable-http remotes whose ``{variables}`` are all declared) and against the code: the package
is this project at this version, and the templated remotes are the URLs the Hub service and users' servers
answer at (``Grants.one_url``, ``Grants.resource_of``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from nbmcp._version import __version__
from nbmcp.jupyter.hub.grants import Grants
from nbmcp.jupyter.hub.tokens import SigningKey

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def server() -> dict:
    return json.loads((ROOT / "server.json").read_text())


def test_oauth_registry_server_json_follows_the_registry_schema(server: dict) -> None:
    assert server["$schema"] == "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", server["name"]), server["name"]
    assert 1 <= len(server["description"]) <= 100, len(server["description"])
    assert server["repository"]["source"] == "github" and server["repository"]["url"].startswith("https://")
    for package in server["packages"]:
        assert package["registryType"] == "pypi" and package["transport"] == {"type": "stdio"}
        assert package["version"] != "latest" and not re.search(r"[\^~><*x]", package["version"])
        for argument in package["packageArguments"]:
            assert argument["type"] in ("positional", "named")
            assert argument["type"] == "named" or "value" in argument or "valueHint" in argument, argument
            assert argument["type"] == "positional" or argument["name"].startswith("--"), argument
        for variable in package.get("environmentVariables", []):
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", variable["name"]), variable
    for remote in server["remotes"]:
        assert remote["type"] == "streamable-http"
        assert remote["url"].startswith("https://"), remote["url"]  # 2025-12-11: templates after the scheme
        used = set(re.findall(r"\{([^}]+)\}", remote["url"]))
        assert used == set(remote["variables"]), (used, remote["variables"])
        assert all(v["isRequired"] and v["description"] for v in remote["variables"].values())


def test_oauth_registry_server_json_is_this_package_at_this_version(server: dict) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (package,) = server["packages"]
    assert package["identifier"] == project["name"] == "jupyter-nbmcp"
    assert package["version"] == server["version"] == project["version"] == __version__
    assert package["runtimeHint"] == "uvx" and "jupyter-nbmcp" in project["scripts"]  # uvx runs that script
    assert package["packageArguments"][0] == {"type": "positional", "value": "serve"}
    assert server["repository"]["url"] == project["urls"]["Source"]


def test_oauth_registry_remotes_are_the_urls_the_hub_serves(server: dict, tmp_path: Path) -> None:
    hub = "hub.example.org/jupyter"
    grants = Grants(
        SigningKey(tmp_path),
        issuer=f"https://{hub}/services/nbmcp",
        hub_url=f"https://{hub}/",
        access_ttl=1,
        refresh_ttl=1,
    )
    values = {"hub": hub, "username": "alice"}
    urls = [re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], r["url"]) for r in server["remotes"]]
    assert urls == [grants.one_url, grants.resource_of("alice") + "/mcp"]
    assert all(urlsplit(url).scheme == "https" and urlsplit(url).netloc == "hub.example.org" for url in urls)
    assert grants.resource_user(urls[1]) == "alice"
