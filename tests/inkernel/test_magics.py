"""``%mcp`` subcommands in a real kernel (status, tools, config and usage errors are in test_server.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import KernelHandle
from tests.inkernel.conftest import start_server

pytestmark = pytest.mark.timeout(90)

OBJECTS = "nbmcp.inkernel.registry.default_registry.snapshot().objects"


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    return start_server(kernel, "import nbmcp.inkernel.registry")


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
    assert "nbmcp: MCP server for this kernel at http://127.0.0.1:" in out and "%mcp config claude" in out
    assert "already serving" in kernel.run("%mcp start").raise_for_error().stdout


def resources_line(kernel: KernelHandle) -> str:
    status = kernel.run("%mcp").raise_for_error().stdout
    (line,) = [line for line in status.splitlines() if line.strip().startswith("resources:")]
    return line


def test_status_lists_the_resources_a_client_can_read(server: dict, kernel: KernelHandle) -> None:
    kernel.run(
        "import nbmcp\n"
        "nbmcp.expose([1, 2, 3], 'sales')\n"
        "@nbmcp.resource('docs://readme')\ndef readme() -> str:\n    return 'read me'\n"
        "@nbmcp.resource('items://{id}')\ndef item(id: str) -> str:\n    return id\n"
    ).raise_for_error()
    line = resources_line(kernel)
    assert "nbmcp://objects (index)" in line and "nbmcp://objects/sales" in line
    assert "nbmcp://objects/{name}/rows/{offset}/{limit}" in line  # how to page a frame
    assert "docs://readme" in line and "items://{id}" in line
    assert "only nbmcp://objects" not in line

    # Many objects are counted, not listed: the line stays one line.
    kernel.run("for i in range(8):\n    nbmcp.expose(i, f'n{i}')").raise_for_error()
    line = resources_line(kernel)
    objects = kernel.value("len(nbmcp.inkernel.registry.default_registry.snapshot().objects)")
    assert f"{objects} objects under nbmcp://objects/{{name}}" in line and "nbmcp://objects/n3" not in line
    kernel.run("for i in range(8):\n    nbmcp.unexpose(f'n{i}')\nnbmcp.unexpose('sales')").raise_for_error()


def test_bad_subcommands_say_what_to_type(server: dict, kernel: KernelHandle) -> None:
    bad = kernel.run("%mcp statuss")
    assert "UsageError" in bad.stderr and "unknown %mcp subcommand 'statuss'" in bad.stderr
    for subcommand in ("%mcp tools", "%mcp config", "%mcp start [--new-port]", "%mcp stop", "%mcp mode"):
        assert subcommand in bad.stderr
    assert "Traceback" not in bad.stderr  # a usage error, not a crash
    bad = kernel.run('%mcp expose "unclosed')
    assert "UsageError" in bad.stderr and "%mcp tools" in bad.stderr
    bad = kernel.run("%mcp config claud")
    assert "UsageError" in bad.stderr and "claude" in bad.stderr and "vscode" in bad.stderr
    bad = kernel.run("%mcp stop now")
    assert "UsageError" in bad.stderr and "%mcp stop takes no arguments" in bad.stderr
