"""`nbmcp demo`, run as the README says: a real kernel, a real client, and what an assistant sees, briefly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def demo_output() -> str:
    script = Path(sys.executable).with_name("nbmcp")
    command = [str(script), "demo"] if script.exists() else [sys.executable, "-m", "nbmcp", "demo"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=110, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_demo_shows_a_tool_call_and_its_result(demo_output: str) -> None:
    assert "call revenue_by_city(top=2) ->" in demo_output
    assert '"Oslo": 430.25' in demo_output


def test_the_demo_shows_a_table(demo_output: str) -> None:
    assert "call read_rows(name='sales', limit=4) ->" in demo_output
    assert "| city | amount |" in demo_output and "| Oslo | 310.25 |" in demo_output


def test_the_demo_reads_a_row_page_as_a_resource(demo_output: str) -> None:
    assert "The assistant sees these resources: nbmcp://objects, nbmcp://objects/sales" in demo_output
    assert "read nbmcp://objects/sales/rows/0/3 -> application/json + text/markdown:" in demo_output
    assert "rows 0 to 2 of 6, columns ['city', 'amount']" in demo_output
    page = demo_output.split("read nbmcp://objects/sales/rows/0/3", 1)[1]
    assert page.index('{"city": "Oslo", "amount": 120.0}') < page.index('{"city": "Pune", "amount": 42.0}')
    assert '"Oslo", "amount": 310.25' not in page.split("\n\n", 1)[0]  # the page stops at its limit


def test_the_demo_is_short_and_leaves_nothing_running(demo_output: str) -> None:
    assert len(demo_output.splitlines()) < 80  # readable in one screen or two
    assert "Traceback" not in demo_output and "failed" not in demo_output
    assert "the kernel is shut down" in demo_output
