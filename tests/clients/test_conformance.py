"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``), server side, both the ``active``
suite (the default) and ``--suite all`` (pending scenarios too), against its "everything server" written with
nbmcp's public API (:mod:`tests.clients.conformance_server`) and served from a kernel by ``%load_ext nbmcp``.

The suite cannot send headers, so it talks to the kernel through a loopback proxy that adds the bearer token
(:mod:`tests.clients.token_proxy`). Every check of every scenario must pass (``SUCCESS``; ``INFO`` is a log line);
``WARNING`` (a SHOULD of the spec) is listed in its own test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients import client_env, npm_client, run
from tests.clients.token_proxy import token_proxy
from tests.conftest import start_kernel

pytestmark = pytest.mark.timeout(300)

FIXTURE = Path(__file__).with_name("conformance_server.py")

# `conformance list` of @modelcontextprotocol/conformance 0.1.16 (server scenarios); its `active` suite leaves
# out the pending ones.
SCENARIOS = [
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "json-schema-2020-12",
    "elicitation-sep1034-defaults",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
]
PENDING = {"json-schema-2020-12", "server-sse-polling"}
RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def read_results(out: Path) -> dict[str, list[dict[str, Any]]]:
    """``{scenario: checks}`` from the suite's output dir (one ``server-SCENARIO-TIME/checks.json`` each)."""
    results = {}
    for checks in out.glob("*/checks.json"):
        match = RESULT_DIR.match(checks.parent.name)
        assert match, checks
        results[match[1]] = json.loads(checks.read_text())
    return results


@pytest.fixture(scope="module")
def suites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, list[dict[str, Any]]]]]:
    conformance = npm_client("conformance")
    home = tmp_path_factory.mktemp("conformance-home")
    kernel = start_kernel()
    try:
        kernel.run("%load_ext nbmcp").raise_for_error()
        kernel.run(FIXTURE.read_text()).raise_for_error()
        info = kernel.value("{'url': nbmcp.info().url, 'token': nbmcp.info().token}")
        found = {}
        with token_proxy(info["url"], info["token"]) as url:
            for suite in ("active", "all"):
                out = home / suite
                cmd = [conformance, "server", "--url", url, "--suite", suite, "-o", out]
                ran = run(cmd, env=client_env(home), cwd=home, timeout=240)
                found[suite] = read_results(out)
                assert found[suite], ran
        yield found
    finally:
        kernel.shutdown()


def failures(checks: list[dict[str, Any]], status: str = "FAILURE") -> list[str]:
    return [f"{c['id']}: {c.get('errorMessage') or c.get('description')}" for c in checks if c["status"] == status]


def test_the_suites_ran_every_scenario(suites: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    assert sorted(suites["all"]) == sorted(SCENARIOS)
    assert sorted(suites["active"]) == sorted(set(SCENARIOS) - PENDING)


@pytest.mark.parametrize("suite", ["active", "all"])
def test_every_check_passes(suites: dict[str, dict[str, list[dict[str, Any]]]], suite: str) -> None:
    failed = {name: failures(checks) for name, checks in suites[suite].items() if failures(checks)}
    assert not failed, json.dumps(failed, indent=2)
    passed = sum(c["status"] == "SUCCESS" for checks in suites[suite].values() for c in checks)
    assert passed >= len(suites[suite]) - 1  # server-sse-polling reports only INFO and WARNING lines


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(suites: dict[str, dict[str, list[dict[str, Any]]]], scenario: str) -> None:
    checks = suites["all"][scenario]
    assert checks and not failures(checks), json.dumps(checks, indent=2)[:4000]


@pytest.mark.xfail(
    strict=True,
    reason="SEP-1699 resumability is a SHOULD nbmcp does not offer (not an issue 20 item): POST SSE streams carry "
    "no priming event with an id and no retry field, and test_reconnection's stream is not closed mid-call",
)
def test_no_warnings(suites: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    warned = {
        name: failures(checks, "WARNING") for name, checks in suites["all"].items() if failures(checks, "WARNING")
    }
    assert not warned, json.dumps(warned, indent=2)
