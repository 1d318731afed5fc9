"""Fixtures of the ``nbmcp serve`` tests: one started kernel per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nbmcp.serve.kernel.session import KernelSession


@pytest.fixture(scope="module")
async def ks() -> AsyncIterator[KernelSession]:
    session = await KernelSession.start()
    try:
        yield session
    finally:
        await session.shutdown()
