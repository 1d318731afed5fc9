"""The answer channel of kernel-side code: what the kernel sends (nbmcp/serve/languages/wire.py, run here in
a plain interpreter: no IPython shell, so its stdout fallback) and how nbmcp reads it back from an execute's
outputs (transport.answer_of). The display path runs in real kernels: test_inspection, test_languages_*."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from nbmcp.serve.languages.python import wire_source
from nbmcp.serve.languages.transport import ANSWER_MIME, answer_of


def stdout_of_wire(code: str) -> str:
    """What the wire prints when ``code`` runs after it in a plain Python process (no IPython shell)."""
    program = f"import types, sys\nw = types.ModuleType('w')\nexec({wire_source()!r}, w.__dict__)\n{code}"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout


def as_stream(text: str) -> list[dict[str, str]]:
    return [{"output_type": "stream", "name": "stdout", "text": text}]


def test_without_a_display_publisher_the_answer_goes_to_stdout_between_markers() -> None:
    printed = stdout_of_wire(
        "print('a user print first')\nimport json\nm = types.ModuleType('m'); m.f = lambda: json.dumps({'x': [1]})\n"
        "sys.modules['m'] = m\nw.answer('m', 'f', lambda mod: mod.f())"
    )
    assert printed.startswith("a user print first\n")
    assert answer_of(as_stream(printed)) == {"x": [1]}


def test_a_module_not_installed_yet_asks_for_the_install() -> None:
    printed = stdout_of_wire("w.answer('not_there', 'f', lambda mod: mod.f())")
    assert answer_of(as_stream(printed)) is None  # the transport then sends the install code


def test_an_exception_in_the_call_is_an_error_answer() -> None:
    printed = stdout_of_wire(
        "sys.modules['m'] = types.ModuleType('m'); sys.modules['m'].f = 1\nw.answer('m', 'f', lambda mod: 1 / 0)"
    )
    assert answer_of(as_stream(printed)) == {"error": "ZeroDivisionError: division by zero"}


def test_display_answers_are_read_as_text_or_as_json() -> None:
    text = {"output_type": "display_data", "data": {ANSWER_MIME: json.dumps({"total": 3})}, "metadata": {}}
    parsed = {"output_type": "display_data", "data": {ANSWER_MIME: {"total": 4}}, "metadata": {}}
    other = {"output_type": "display_data", "data": {"text/plain": "a plot"}, "metadata": {}}
    assert answer_of([text, other]) == {"total": 3}
    assert answer_of([parsed]) == {"total": 4}
    assert answer_of([other]) is None


def test_a_cut_answer_is_a_clear_error() -> None:
    printed = stdout_of_wire(
        "sys.modules['m'] = types.ModuleType('m'); sys.modules['m'].f = 1\n"
        "w.answer('m', 'f', lambda mod: '{\"rows\": [1, 2')"
    )
    with pytest.raises(ToolError, match=r"not JSON .* ask for less"):
        answer_of(as_stream(printed))
