"""``nbmcp bridge``: a stdio MCP server forwarding to an in-kernel server, for clients that launch only commands."""

from __future__ import annotations

import contextlib
import re
from typing import Any

__all__ = ["run_bridge", "unreachable_message"]


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, the members of exception groups and the causes, depth first (the SDK client wraps a failed
    connection in task-group exception groups, several levels deep)."""
    found: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current in found:
            continue
        found.append(current)
        pending.extend(getattr(current, "exceptions", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return found


async def unreachable_message(url: str, token: str | None, exc: BaseException) -> str:
    """One line: why the MCP server at ``url`` could not be reached and what to do instead.

    The SDK client reports an HTTP error status only as "Server returned an error response", so on that
    failure path one plain request asks the server for its status.
    """
    causes = _causes(exc)
    if any(type(c).__name__ in ("ConnectError", "ConnectTimeout", "ConnectionRefusedError") for c in causes):
        return (
            f"nothing answers at {url}: is the server running? `nbmcp list` shows the running servers "
            "(`%load_ext nbmcp` in a notebook starts one)"
        )
    status = await _status_of(url, token)
    hub = re.match(r"(?P<hub>https?://.*?/)user/(?P<user>[^/]+)/", url)  # a JupyterHub user server's route
    if hub and status in (403, 424, 503):
        # the Hub itself answers for a server that is not running: 424 to a GET, an HTML 403 to a POST
        if await _status_of(f"{hub[0]}api", token, get=True) in (424, 503):
            return (
                f"{url}: {hub['user']}'s JupyterHub server is not running: start it from {hub['hub']}hub/home "
                f"(or `POST {hub['hub']}hub/api/users/{hub['user']}/server`), then retry"
            )
        if status == 403:
            return (
                f"{url} answered 403: set $NBMCP_TOKEN to a JupyterHub API token with the scope "
                f"access:servers!user={hub['user']} (create one at {hub['hub']}hub/token)"
            )
    if status in (401, 403):
        how = "the token was refused" if token else "no token was given"
        return (
            f"{url} answered {status}, {how}: set $NBMCP_TOKEN to the server's token (`%mcp token` in its "
            "notebook shows it), or use --kernel-id to read it from the kernel's connection file"
        )
    if status == 404:
        return f"{url} answered 404: not an MCP endpoint; `nbmcp list` shows the running servers' URLs"
    innermost = causes[-1]
    return f"cannot connect to {url}: {type(innermost).__name__}: {innermost}"


async def _status_of(url: str, token: str | None, *, get: bool = False) -> int | None:
    import httpx

    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ping = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False, follow_redirects=get) as http:
            if get:
                return (await http.get(url, headers={**headers, "Accept": "application/json"})).status_code
            return (await http.post(url, json=ping, headers=headers)).status_code
    except httpx.HTTPError:
        return None


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

    async with contextlib.AsyncExitStack() as stack:
        try:
            upstream = await stack.enter_async_context(
                connect(url, token, mode="legacy", message_handler=forward, cache=None)
            )
        except Exception as exc:  # the upstream is not there: one line that says what to do, no traceback
            raise ConnectionError(await unreachable_message(url, token, exc)) from None

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
