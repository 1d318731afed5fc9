"""nbmcp.content.tracebacks: kernel errors and exceptions -> short, ANSI-free MCP errors."""

from __future__ import annotations

import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from nbmcp import content
from tests.content.conftest import only_text

_ANSI_TB = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m0",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


def test_error_converted_strips_ansi():
    conv = content.error_converted("ZeroDivisionError", "division by zero", _ANSI_TB)
    assert conv.is_error
    text = only_text(conv)
    assert text.startswith("ZeroDivisionError: division by zero\n\n")
    assert "\x1b" not in text
    assert "----> 1 1/0" in text
    assert conv.structured["ename"] == "ZeroDivisionError"
    assert conv.structured["evalue"] == "division by zero"
    assert "\x1b" not in conv.structured["traceback"] and "In[1], line 1" in conv.structured["traceback"]
    assert conv.to_result().is_error


def test_error_converted_keeps_the_end_of_long_tracebacks():
    tb = [f"\x1b[1mframe {i}\x1b[0m" for i in range(200)]
    conv = content.error_converted("RecursionError", "too deep", tb)
    lines = conv.structured["traceback"].split("\n")
    assert lines[0] == "[... 170 lines of traceback omitted ...]"
    assert lines[-1] == "frame 199" and len(lines) == 31
    wide = content.error_converted("E", "v", ["x" * 10_000])
    assert len(wide.structured["traceback"]) < 4_200
    assert content.error_converted("KeyboardInterrupt", "", None).content[0].text == "KeyboardInterrupt"


def user_tool(x: int) -> int:
    return helper_that_fails(x)


def helper_that_fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


# a stand-in for a framework module (nbmcp's tool wrapper): its frames must not be shown
_framework = types.ModuleType("fakeframework")
exec("def call(fn, *args):\n    return fn(*args)\n", _framework.__dict__)


def test_exception_converted_shows_user_frames_only():
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(_framework.call, user_tool, 3)
        with pytest.raises(ValueError) as info:
            future.result()
    conv = content.exception_converted(info.value, hide_modules=("fakeframework", "concurrent", "threading"))
    assert conv.is_error
    text = only_text(conv)
    assert text.startswith("ValueError: bad input 3\n\nTraceback (most recent call last):\n")
    assert "in user_tool" in text and "in helper_that_fails" in text
    assert "return helper_that_fails(x)" in text  # source lines are shown
    assert "in call" not in text and "concurrent" not in text and "threading" not in text
    assert "\x1b" not in text
    assert conv.structured == {"ename": "ValueError", "evalue": "bad input 3", "traceback": text.split("\n\n", 1)[1]}


def test_exception_converted_default_hides_the_runner():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError) as info:
        pool.submit(user_tool, 1).result()
    text = only_text(content.exception_converted(info.value))
    assert "concurrent/futures" not in text and "threading.py" not in text
    assert "in user_tool" in text


def test_exception_converted_names_the_cause():
    try:
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc
    except RuntimeError as exc:
        text = only_text(content.exception_converted(exc))
    assert text.startswith("RuntimeError: lookup failed")
    assert "(caused by KeyError: 'missing')" in text
