"""``%mcp`` subcommands in a real kernel (status, tools, config and usage errors are in test_server.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import KernelHandle

pytestmark = pytest.mark.timeout(90)

OBJECTS = "nbmcp.inkernel.registry.default_registry.snapshot().objects"


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    kernel.run("%load_ext nbmcp\nimport nbmcp, nbmcp.inkernel.registry").raise_for_error()
    return kernel.value("{'url': nbmcp.info().url}")


def test_expose_follows_the_variable(server: dict, kernel: KernelHandle) -> None:
    out = kernel.run("prices = [1, 2]\n%mcp expose prices").raise_for_error()
    assert "exposed 'prices' as nbmcp://objects/prices" in out.stdout
    assert not out.stderr  # the magic says what it means: no deprecation warning
    kernel.run("prices = [3, 4, 5]").raise_for_error()  # rebinding is live
    assert kernel.value(f"{OBJECTS}['prices'].get()") == [3, 4, 5]


def test_expose_as_an_alias(server: dict, kernel: KernelHandle) -> None:
    out = kernel.run("quantities = 'a string variable'\n%mcp expose quantities --as qty").raise_for_error()
    assert "nbmcp://objects/qty" in out.stdout
    assert kernel.value(f"{OBJECTS}['qty'].variable") == "quantities"
    kernel.run("quantities = 'rebound'").raise_for_error()
    assert kernel.value(f"{OBJECTS}['qty'].get()") == "rebound"


def test_expose_usage_errors(server: dict, kernel: KernelHandle) -> None:
    bad = kernel.run("%mcp expose never_defined_here")
    assert "UsageError" in bad.stderr and "'never_defined_here' is not defined" in bad.stderr
    bad = kernel.run("%mcp expose a b c d")
    assert "UsageError" in bad.stderr and "%mcp expose NAME [--as ALIAS]" in bad.stderr


def test_stop_and_start_print_the_banner(server: dict, kernel: KernelHandle) -> None:
    assert "stopped" in kernel.run("%mcp stop").raise_for_error().stdout
    out = kernel.run("%mcp start").raise_for_error().stdout
    assert "nbmcp: MCP server for this kernel at http://127.0.0.1:" in out and "nbmcp bridge --kernel-id" in out
    assert "already serving" in kernel.run("%mcp start").raise_for_error().stdout
