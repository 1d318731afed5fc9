"""The kernels of ``nbmcp serve``'s clients: their shutdown when the server stops."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from nbmcp.exceptions import KernelSessionError
from nbmcp.serve.provider import KernelProvider, ServeOptions

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_a_bounded_shutdown_ends_at_its_bound_and_a_starting_kernel_still_shuts_itself_down(
    tmp_path: Path,
) -> None:
    """A signal's shutdown bounds ``close_all`` (15 s). Waiting for a kernel still starting, the bound must end it:
    swallowing that cancellation kept it going (and cancelled the start instead of letting it shut down)."""
    provider = KernelProvider(ServeOptions(root=tmp_path, record=False))
    starting = provider.start_shared()
    with anyio.move_on_after(0.05) as bound:  # long before the kernel is up
        await provider.close_all()
    assert bound.cancelled_caught
    with pytest.raises(KernelSessionError, match="shutting down"):  # up, it saw the server stopping: shut down
        await starting
