"""fast-agent (PyPI ``fast-agent-mcp``, in its own Python 3.13 venv) with its ``passthrough`` model: the message
``***CALL_TOOL execute {"code": "6*7"}`` makes a real tool call, and the model's reply is what the model was shown
of the result (fast-agent shows ``structuredContent`` when a result has it, not the text). It exits 0 even when
the call fails: the assertions are on the ``--results`` file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.clients import client_env, fast_agent, run
from tests.clients.conftest import Http, InKernel

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", autouse=True)
def installed() -> Path:  # autouse fixtures come first: a skip starts no server
    return fast_agent()


def stdio_command(entry: dict[str, Any]) -> str:
    return shlex.join([entry["command"], *entry["args"]])


def call_execute(home: Path, *server: str, code: str = "6*7") -> dict[str, Any]:
    """Run fast-agent once; the results file (the conversation) as JSON."""
    binary = fast_agent()
    results = home / "results.json"
    message = f"***CALL_TOOL execute {json.dumps({'code': code})}"
    cmd = [binary, "--no-update-check", "go", "--isolated", "--quiet", "--model", "passthrough", *server]
    ran = run([*cmd, "-m", message, "--results", results], env=client_env(home), cwd=home)
    assert results.exists(), ran
    return json.loads(results.read_text())


def what_the_model_saw(conversation: dict[str, Any]) -> str:
    """The passthrough model's last reply: the tool result as fast-agent put it before the model."""
    last = conversation["messages"][-1]
    assert last["role"] == "assistant", last
    return "\n".join(c["text"] for c in last["content"] if c["type"] == "text")


def carries(seen: str, value: str) -> bool:
    """Whether the model was shown ``value`` as a value (a string or number in the JSON it saw, or the text)."""
    try:
        shown = json.loads(seen)
    except ValueError:
        return seen.strip() == value or seen.splitlines()[0].strip() == value

    def values(node: Any) -> Any:
        if isinstance(node, dict):
            for item in node.values():
                yield from values(item)
        elif isinstance(node, list):
            for item in node:
                yield from values(item)
        else:
            yield str(node)

    return value in set(values(shown))


def test_over_stdio_the_model_sees_42(tmp_path: Path, serve_stdio: dict[str, Any]) -> None:
    seen = what_the_model_saw(call_execute(tmp_path, "--stdio", stdio_command(serve_stdio)))
    assert carries(seen, "42"), seen


def test_over_http_at_the_printed_url_the_model_sees_42(tmp_path: Path, serve_http: Http) -> None:
    seen = what_the_model_saw(call_execute(tmp_path, "--url", serve_http.url, "--auth", serve_http.token))
    assert carries(seen, "42"), seen


def test_over_http_in_kernel_the_model_sees_42(tmp_path: Path, inkernel: InKernel) -> None:
    seen = what_the_model_saw(call_execute(tmp_path, "--url", inkernel.http.url, "--auth", inkernel.http.token))
    assert carries(seen, "42"), seen


def test_a_failing_call_is_shown_as_an_error(tmp_path: Path, serve_stdio: dict[str, Any]) -> None:
    # fast-agent exits 0 either way: the check above can fail only if the result says what happened
    seen = what_the_model_saw(call_execute(tmp_path, "--stdio", stdio_command(serve_stdio), code="1/0"))
    assert "ZeroDivisionError" in seen and not carries(seen, "42"), seen
