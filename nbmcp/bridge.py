"""``nbmcp bridge``: a stdio MCP server forwarding to an in-kernel server, for clients that launch only commands."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Relay", "run_bridge", "unreachable_message"]


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


class Relay:
    """What the upstream server sends the bridge as a client — log messages, elicitation, sampling and roots
    requests — passed to the downstream client, answers passed back.

    The upstream sends them while it serves a request; the bridge serves one downstream request with one
    upstream request, so they go to the downstream request in flight (the latest, when several are), as part
    of it: request-scoped, which the 2026 era requires. Log levels: a handshake-era client's
    ``logging/setLevel`` is forwarded; a 2026-era request's ``_meta`` level becomes the upstream connection's
    level for its duration, and messages are filtered by that request's level before they go down.
    """

    def __init__(self) -> None:
        self.upstream: Any = None
        self._inflight: list[Any] = []
        self._last: Any = None  # the latest downstream request context (roots may be asked between calls)
        self._upstream_level: str | None = None

    def client_callbacks(self) -> dict[str, Any]:
        """Callbacks for the upstream ``mcp.Client``: each server→client message type the SDK surfaces."""
        return {
            "logging_callback": self._log,
            "elicitation_callback": self._elicit,
            "sampling_callback": self._sample,
            "list_roots_callback": self._roots,
        }

    @contextlib.asynccontextmanager
    async def serving(self, ctx: Any) -> AsyncIterator[None]:
        """While the upstream serves the downstream request ``ctx``: relay to it, at its log level."""
        from mcp.types import LOG_LEVEL_META_KEY

        self._last = ctx
        level = (ctx.meta or {}).get(LOG_LEVEL_META_KEY) if self._modern(ctx) else None
        if level is not None and level != self._upstream_level and self.upstream is not None:
            await self._set_upstream_level(level)
        self._inflight.append(ctx)
        try:
            yield
        finally:
            self._inflight.remove(ctx)

    def serve_set_level(self, server: Any) -> None:
        """Serve ``logging/setLevel`` downstream (handshake era) by forwarding it upstream."""
        from mcp.types import EmptyResult, SetLevelRequestParams

        async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
            await self._set_upstream_level(params.level)
            return EmptyResult()

        server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)

    async def _set_upstream_level(self, level: str) -> None:
        import warnings

        with warnings.catch_warnings():  # the SDK marks logging deprecated for 2026; the bridge speaks both eras
            warnings.simplefilter("ignore")
            await self.upstream.set_logging_level(level)
        self._upstream_level = level

    @staticmethod
    def _modern(ctx: Any) -> bool:
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    def _target(self) -> Any:
        return self._inflight[-1] if self._inflight else None

    async def _log(self, params: Any) -> None:
        import mcp.types as types
        from mcp.server.connection import allowed_log_levels

        ctx = self._target()
        if ctx is None:
            return  # nothing in flight: a 2026-era client could not take it, a handshake one did not ask
        if self._modern(ctx) and params.level not in allowed_log_levels(ctx.protocol_version, ctx.meta):
            return
        with contextlib.suppress(Exception):  # a client that went away must not break the upstream call
            await ctx.session.send_notification(
                types.LoggingMessageNotification(params=params), related_request_id=ctx.request_id
            )

    async def _ask(self, request: Any, result_type: Any, *, scoped: bool = True) -> Any:
        import mcp.types as types
        from mcp import MCPError
        from mcp.shared.message import ServerMessageMetadata

        ctx = self._target() if scoped else (self._target() or self._last)
        if ctx is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST, message=f"{request.method}: the bridge has no client request to ask through"
            )
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id) if scoped else None
        try:
            return await ctx.session.send_request(request, result_type, metadata=metadata)
        except MCPError as exc:
            return exc.error
        except Exception as exc:  # e.g. a 2026-era client, which takes no server→client requests
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"{request.method} through the bridge: {exc}")

    async def _elicit(self, context: Any, params: Any) -> Any:
        import mcp.types as types

        return await self._ask(types.ElicitRequest(params=params), types.ElicitResult)

    async def _sample(self, context: Any, params: Any) -> Any:
        import mcp.types as types

        return await self._ask(types.CreateMessageRequest(params=params), types.CreateMessageResult)

    async def _roots(self, context: Any) -> Any:
        import mcp.types as types

        return await self._ask(types.ListRootsRequest(), types.ListRootsResult, scoped=False)


async def run_bridge(url: str, token: str | None) -> None:
    """Serve stdio, forwarding every tool, resource and prompt request to the MCP server at ``url``.

    Generic: the upstream's tools, resources (and templates, subscriptions), prompts and completions are
    re-served as they are, progress notifications of a call are relayed, and upstream ``list_changed`` /
    ``resources/updated`` notifications are forwarded (to handshake-era sessions directly, to 2026-era
    clients through ``subscriptions/listen``). What the upstream sends while serving a request — log
    messages, and requests to the client (elicitation, sampling, roots) — goes to the client of the request
    in flight (:class:`Relay`), with the client's answer sent back up. The client's log level
    (``logging/setLevel``, or a 2026-era request's ``_meta`` level) is passed upstream.
    """
    import anyio
    import mcp.types as types
    from mcp.server.lowlevel.server import NotificationOptions, Server
    from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
    from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged

    from .client import connect
    from .sdk import connection_of
    from .transport.stdio import bounded_stdio_server

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
            relay = Relay()
            upstream = await stack.enter_async_context(
                connect(url, token, mode="legacy", message_handler=forward, cache=None, **relay.client_callbacks())
            )
            relay.upstream = upstream
        except Exception as exc:  # the upstream is not there: one line that says what to do, no traceback
            raise ConnectionError(await unreachable_message(url, token, exc)) from None

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            remember(ctx)
            return await upstream.list_tools(cursor=params.cursor if params else None)

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            remember(ctx)

            async def progress(value: float, total: float | None, message: str | None) -> None:
                await ctx.session.report_progress(value, total, message)

            async with relay.serving(ctx):
                return await upstream.call_tool(params.name, params.arguments, progress_callback=progress)

        async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            remember(ctx)
            return await upstream.list_resources(cursor=params.cursor if params else None)

        async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
            return await upstream.list_resource_templates(cursor=params.cursor if params else None)

        async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
            async with relay.serving(ctx):
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
            async with relay.serving(ctx):
                return await upstream.get_prompt(params.name, params.arguments)

        async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
            if upstream.server_capabilities is None or upstream.server_capabilities.completions is None:
                return types.CompleteResult(completion=types.Completion(values=[]))
            context = params.context.arguments if params.context else None
            return await upstream.complete(params.ref, params.argument.model_dump(), context_arguments=context)

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
            on_completion=complete,
        )
        relay.serve_set_level(server)
        options = server.create_initialization_options(
            NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        )
        async with bounded_stdio_server() as (read_stream, write_stream):  # one message <= 4 MiB, as over HTTP
            with anyio.CancelScope():
                await server.run(read_stream, write_stream, options)
