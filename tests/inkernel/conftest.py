"""The in-kernel server's tests: nbmcp loaded into the module's real kernel, and the helpers these tests share.

A module that needs nothing of its own takes the ``server`` fixture as it is; one with its own tools, objects or
settings overrides it in three lines with :func:`start_server`, which says how a user loads nbmcp, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from tests.conftest import KernelHandle


def server_info(kernel: KernelHandle, *fields: str) -> dict[str, Any]:
    """The running server's URL and token, and any other ``nbmcp.info()`` fields named, as a dict."""
    names = ["url", "token", *fields]
    return kernel.value("{" + ", ".join(f"{name!r}: nbmcp.info().{name}" for name in names) + "}")


def start_server(
    kernel: KernelHandle, setup: str = "", *, config: dict[str, Any] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Load nbmcp in ``kernel`` as a user does (``%load_ext nbmcp``, ``import nbmcp``), then run ``setup`` there
    (within ``timeout`` seconds).

    ``config`` sets ``NbMCP`` options before the extension loads, as a user's IPython config would. Returns the
    server's URL and token, and what loading it printed (``"banner"``)."""
    if config:
        settings = "\n".join(f"get_ipython().config.NbMCP.{name} = {value!r}" for name, value in config.items())
        kernel.run(settings).raise_for_error()
    loaded = kernel.run("%load_ext nbmcp\nimport nbmcp").raise_for_error()
    if setup:
        kernel.run(setup, timeout=timeout).raise_for_error()
    return {**server_info(kernel), "banner": loaded.stdout}


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    """nbmcp with its defaults in the module's kernel: ``{"url", "token", "banner"}``."""
    return start_server(kernel)


def wait_for(kernel: KernelHandle, expression: str, ready: Callable[[Any], bool] = bool, timeout: float = 10.0) -> Any:
    """Poll a kernel expression until ``ready(value)``: the kernel's threads (tool calls, the panel's updater) run on
    their own schedule. Returns the value; AssertionError with the last one if it never became ready."""
    deadline = time.monotonic() + timeout
    while True:
        value = kernel.value(expression)
        if ready(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} never became ready within {timeout} s; last value: {value!r}")
        time.sleep(0.05)


async def eventually(
    kernel: KernelHandle, expression: str, ready: Callable[[Any], bool] = bool, timeout: float = 10.0
) -> Any:
    """:func:`wait_for` off the event loop, so the client's own tasks keep running meanwhile."""
    return await anyio.to_thread.run_sync(wait_for, kernel, expression, ready, timeout)
