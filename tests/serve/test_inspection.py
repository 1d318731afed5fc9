"""Inspection through the probe in a real kernel."""

from __future__ import annotations

import asyncio

import pytest

from nbmcp.serve.kernel.session import KernelSession

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(30)
async def test_inspection_falls_back_without_subshells(ks: KernelSession) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from nbmcp.serve.kernel_tools.inspection import run_probe, variables_text

    await ks.execute("fallback_var = {'k': 1}")
    features = ks.kernel_info.get("supported_features")
    ks.kernel_info["supported_features"] = []  # a kernel without subshells (ipykernel < 7)
    try:
        idle = await run_probe(ks, "list_variables(50)")  # idle kernel: the main shell answers
        assert "fallback_var" in {v["name"] for v in idle["variables"]}
        running = asyncio.Event()
        busy = asyncio.create_task(
            ks.execute(
                "print('running', flush=True)\nimport time; time.sleep(1.5)", on_output=lambda n, t: running.set()
            )
        )
        await asyncio.wait_for(running.wait(), 10)
        # the inspection waits for the running cell (queued behind it) and says so, instead of failing
        waited = await run_probe(ks, "list_variables(50)")
        assert (await busy).status == "ok"  # the cell ran to its end, untouched
        assert "fallback_var" in {v["name"] for v in waited["variables"]}
        assert "no subshells" in waited["note"] and "waited" in waited["note"]
        assert waited["note"] in variables_text(waited, ks.describe())
        # a cell longer than the inspection's bound: a clear error, and the human's cell is not interrupted
        running.clear()
        long = asyncio.create_task(
            ks.execute("print('long', flush=True)\nimport time; time.sleep(2)", on_output=lambda n, t: running.set())
        )
        await asyncio.wait_for(running.wait(), 10)
        with pytest.raises(ToolError, match=r"was busy running a cell for 0\.5 s and has no subshells"):
            await run_probe(ks, "list_variables(50)", timeout=0.5)
        assert (await long).status == "ok"
    finally:
        ks.kernel_info["supported_features"] = features
