"""``nbmcp bridge``: a stdio MCP server forwarding to an in-kernel server, for clients that launch only commands."""

from __future__ import annotations

from typing import Any

__all__ = ["run_bridge"]


async def run_bridge(url: str, token: str | None) -> None:
    """Serve stdio, forwarding every tool, resource and prompt request to the MCP server at ``url``.

    Generic: the upstream's tools, resources (and templates, subscriptions) and prompts are re-served as
    they are, progress notifications of a call are relayed, and upstream ``list_changed`` /
    ``resources/updated`` notifications are forwarded (to handshake-era sessions directly, to 2026-era
    clients through ``subscriptions/listen``).
    """
    import anyio
    import mcp.types as types
    from mcp.server.lowlevel.server import NotificationOptions, Server
    from mcp.server.stdio import stdio_server
    from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
    from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged

    from .client import connect
    from .sdk import connection_of

    bus = InMemorySubscriptionBus()
    sessions: dict[int, Any] = {}  # handshake-era downstream sessions, by connection

    def remember(ctx: Any) -> None:
        connection = connection_of(ctx.session)
        if connection is not None and connection.session_id is None and ctx.protocol_version < "2026":
            sessions[id(connection)] = ctx.session

    async def forward(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            event, send = ToolsListChanged(), "send_tool_list_changed"
        elif isinstance(message, types.ResourceListChangedNotification):
            event, send = ResourcesListChanged(), "send_resource_list_changed"
        elif isinstance(message, types.PromptListChangedNotification):
            event, send = PromptsListChanged(), "send_prompt_list_changed"
        elif isinstance(message, types.ResourceUpdatedNotification):
            uri = str(message.params.uri)
            await bus.publish(ResourceUpdated(uri=uri))
            for key, session in list(sessions.items()):
                try:
                    await session.send_resource_updated(uri)
                except Exception:
                    sessions.pop(key, None)
            return
        else:
            return
        await bus.publish(event)
        for key, session in list(sessions.items()):
            try:
                await getattr(session, send)()
            except Exception:
                sessions.pop(key, None)

    async with connect(url, token, mode="legacy", message_handler=forward, cache=None) as upstream:

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            remember(ctx)
            return await upstream.list_tools(cursor=params.cursor if params else None)

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            remember(ctx)

            async def relay(progress: float, total: float | None, message: str | None) -> None:
                await ctx.session.report_progress(progress, total, message)

            return await upstream.call_tool(params.name, params.arguments, progress_callback=relay)

        async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            remember(ctx)
            return await upstream.list_resources(cursor=params.cursor if params else None)

        async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
            return await upstream.list_resource_templates(cursor=params.cursor if params else None)

        async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
            return await upstream.read_resource(str(params.uri))

        async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
            remember(ctx)
            return await upstream.subscribe_resource(str(params.uri))

        async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
            return await upstream.unsubscribe_resource(str(params.uri))

        async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
            remember(ctx)
            return await upstream.list_prompts(cursor=params.cursor if params else None)

        async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
            return await upstream.get_prompt(params.name, params.arguments)

        info = upstream.server_info
        server: Server[Any] = Server(
            info.name if info else "nbmcp-bridge",
            version=(info.version if info else "") or "",
            instructions=upstream.instructions,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_list_resource_templates=list_templates,
            on_read_resource=read_resource,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=unsubscribe,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
            on_subscriptions_listen=ListenHandler(bus),
        )
        options = server.create_initialization_options(
            NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        )
        async with stdio_server() as (read_stream, write_stream):
            with anyio.CancelScope():
                await server.run(read_stream, write_stream, options)
