"""The in-kernel server is built from one frozen settings object (``InKernelSettings``), made from the
``c.NbMCP`` config by one classmethod: a setting reaches the server through it, nothing is wired in later."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mcp import Client

from nbmcp.inkernel.config import InKernelSettings, NbMCP
from nbmcp.inkernel.registry import Registry, ToolSpec
from nbmcp.inkernel.server import NbMCPServer
from tests.mcp_results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def test_every_setting_of_the_config_is_a_field() -> None:
    """A new ``c.NbMCP`` trait without its field (or a field without its trait) fails here."""
    fields = {field.name for field in dataclasses.fields(InKernelSettings)}
    assert set(NbMCP().traits(config=True)) - {"allow_execute"} == fields  # allow_execute is folded into mode


def test_the_settings_are_the_config_s_frozen() -> None:
    config = NbMCP(allow_execute=True, allowed_origins=["https://my.app"], port=8123)
    settings = InKernelSettings.from_config(config)
    assert settings.mode == "execute" and settings.port == 8123 and settings.allowed_origins == ("https://my.app",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    defaults = InKernelSettings.from_config()
    assert defaults == InKernelSettings.from_config(NbMCP())
    assert (defaults.output_budget, defaults.mode, defaults.tool_timeout) == (20_000, "tools", 60.0)


async def test_a_config_change_reaches_the_server_through_its_settings() -> None:
    config = NbMCP(output_budget=300, approval_timeout=7.5, max_abandoned_calls=2, query_timeout=4.0, mode="read-only")
    settings = InKernelSettings.from_config(config)
    registry = Registry()
    registry.add_tool(ToolSpec(fn=lambda: "x" * 5000, name="long", description="A long answer."))
    server = NbMCPServer(registry, settings)
    try:
        assert server.settings is settings
        assert server.approval_timeout == 7.5 and server.query.timeout == 4.0
        assert server.snapshot().mode == "read-only" and "long" not in server.snapshot().served_tools
        assert server.snapshot().tool_pool is not None and server.snapshot().tool_pool.max_abandoned == 2
        server.set_mode("tools")
        async with Client(server.mcp) as client:
            shown = text_of(await client.call_tool("long", {}))
        assert shown.count("x") <= 300 < 5000  # cut at the configured budget
    finally:
        server.close()


def test_start_server_builds_both_servers_from_one_settings_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from nbmcp.inkernel import lifecycle

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))  # no user config files
    info = lifecycle.start_server(registry=Registry(), output_budget=321, profile_rows=77, port=0)
    try:
        running = lifecycle.current_server()
        assert running is not None and running.settings is running.mcp_server.settings
        assert running.settings.output_budget == 321 and running.mcp_server.views.frame_limits.profile_rows == 77
        assert running.settings.token == info.token and running.endpoint.port == info.port
        assert Path(info.connection_file or "").parent == tmp_path
    finally:
        lifecycle.stop_server()
