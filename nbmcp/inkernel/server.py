"""``NbMCPServer``: the MCP app built from a :class:`~nbmcp.inkernel.registry.Registry`.

Data flows one way: what the user published is mirrored into an SDK ``MCPServer`` (tools and prompts by
spec identity; objects and resources are resolved at read time by :mod:`.views.objects`), and registry events
become change notifications (:mod:`.protocol.notifications`). Calls run through :mod:`.calls.pipeline`; clients and
calls are recorded by :mod:`.oversight.activity`. Serving it over HTTP with a connection file is
:class:`~nbmcp.inkernel.lifecycle.InKernelServer`'s job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver.prompts import Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, BlobResourceContents, ReadResourceResult, Resource, ResourceTemplate
from mcp.types import Tool as MCPTool

from .. import content
from .._version import __version__
from ..exceptions import ToolTimeout
from ..sdk import ToolServer, announce_list_changes, quiet_mcp_server
from ..tasks import owner_middleware, tasks_extension
from .calls.pipeline import Approver, CallPipeline, MainThreadRunner
from .calls.workers import PoolStatus, ToolBusy, WorkerPool, client_key_middleware, current_client_key
from .config import InKernelSettings
from .oversight.activity import Activity, CallRecord, ClientRecord
from .protocol import logs, prompts, structured, toolmeta
from .protocol.completion import Completions
from .protocol.notifications import Notifier
from .registry import PromptSpec, Registry, RegistryEvent, ToolSpec, check_icons
from .views.objects import OBJECT_TEMPLATES, Base64Blob, ObjectViews, builtin_tool
from .views.query import QueryTool
from .views.table_app import TOOL_META, apps_extension, view_tool

__all__ = ["MODES", "OBJECT_TEMPLATES", "CallRecord", "ClientRecord", "NbMCPServer", "ServerSnapshot"]

MODES = ("read-only", "tools", "execute")
READ_THREADS = 16  # built-in reads at once: each is bounded (a page, a summary), so a few threads serve many clients
EXECUTE_TOOLS = {"execute", "task_status", "task_result", "task_cancel"}  # served in execute mode only
INSTRUCTIONS = (
    "Tools and data from a live Jupyter kernel. Exposed objects (DataFrames and others) are listed by "
    "`list_objects` and readable with `describe_object` and `read_rows` (pages of rows), or as resources "
    "under nbmcp://objects; `query` runs one read-only SQL SELECT over them by name. Values are live: they "
    "reflect the notebook's current state."
)


@dataclass(frozen=True)
class ServerSnapshot:
    """What the server serves and has seen, at one moment: plain data, safe to hand to any thread."""

    mode: str
    served_tools: dict[str, ToolSpec]
    clients: list[ClientRecord]  # newest first
    calls: list[CallRecord]  # oldest first
    subscribed: list[str]
    tool_pool: PoolStatus | None = None  # user calls running, and abandoned threads per tool


class _RegistryBackedMCP(ToolServer):
    """An MCPServer whose resources come from the registry at read time (the SDK cannot remove one)."""

    def __init__(self, views: ObjectViews, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._views = views
        self.input_schemas: dict[str, dict[str, Any]] = {}  # @nbmcp.tool(input_schema=...), listed verbatim

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        for tool in tools:
            if tool.name in self.input_schemas:
                tool.input_schema = self.input_schemas[tool.name]
            if tool.output_schema is not None:  # a NaN goes out as null: say so (a copy: the SDK's stays as is)
                tool.output_schema = structured.nullable_numbers(tool.output_schema)
        return tools

    async def list_resources(self) -> list[Resource]:
        return self._views.list_resources() + await super().list_resources()

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return self._views.list_resource_templates() + await super().list_resource_templates()

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        result = await self._views.read_resource(str(uri))
        if result is not None:
            return [_placeholder(item) for item in result]
        return await super().read_resource(uri, context)

    async def _handle_read_resource(self, ctx: Any, params: Any) -> Any:
        # The SDK's handler, but contents that are base64 already (the Arrow read) go into the reply as they are.
        encoded: list[str] = []
        token = _ENCODED.set(encoded)
        try:
            result = await super()._handle_read_resource(ctx, params)
        finally:
            _ENCODED.reset(token)
        if encoded and isinstance(result, ReadResourceResult):
            result.contents = [_filled(item, encoded) for item in result.contents]
        encoded.clear()  # contexts copied during the read (worker threads, tasks) keep the list, not the text
        return result


# Base64 texts of the read being answered: read_resource leaves a placeholder, _handle_read_resource fills it in.
_ENCODED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("nbmcp_encoded_blobs", default=None)
_SLOT = "nbmcp/encoded-blob"


def _placeholder(item: ReadResourceContents) -> ReadResourceContents:
    encoded = _ENCODED.get()
    if not isinstance(item.content, Base64Blob):
        return item
    if encoded is None:  # not through the SDK's handler: plain bytes, as any other resource
        return ReadResourceContents(base64.b64decode(item.content.text), item.mime_type, item.meta)
    encoded.append(item.content.text)
    return ReadResourceContents(b"", item.mime_type, {**(item.meta or {}), _SLOT: len(encoded) - 1})


def _filled(item: Any, encoded: list[str]) -> Any:
    slot = (item.meta or {}).get(_SLOT) if isinstance(item, BlobResourceContents) else None
    if slot is None:
        return item
    meta = {k: v for k, v in item.meta.items() if k != _SLOT} or None
    return item.model_copy(update={"blob": encoded[slot], "meta": meta})


class NbMCPServer:
    """A registry served as MCP, plus the built-in object tools and resources, as ``settings`` say (None: the
    defaults of ``c.NbMCP``).

    ``main_thread_runner`` runs a callable on the kernel's main thread between cells and ``execute_runner``
    runs code in the user's namespace (both given by the IPython extension); ``approver`` asks the
    notebook's owner (set by the approval panel).
    """

    def __init__(
        self,
        registry: Registry,
        settings: InKernelSettings | None = None,
        *,
        main_thread_runner: MainThreadRunner | None = None,
        execute_runner: Callable[[str], Any] | None = None,
    ) -> None:
        settings = settings if settings is not None else InKernelSettings.from_config()
        if settings.mode not in MODES:
            raise ValueError(f"mode must be 'read-only', 'tools' or 'execute', not {settings.mode!r}")
        self.settings = settings
        self.registry = registry
        self.output_budget = settings.output_budget
        self.image_max_px = settings.image_max_px
        self.execute_runner = execute_runner
        self.change_listeners: list[Callable[[str], None]] = []
        self.outputs = content.OutputStore()
        self._lock = threading.RLock()
        self._mode = settings.mode
        self._served_tools: dict[str, ToolSpec] = {}
        self._served_prompts: dict[str, PromptSpec] = {}

        # User code and the built-in reads run in separate pools: no number of stuck user calls blocks a read.
        self.tool_pool = WorkerPool(
            max_running=settings.max_tool_threads,
            max_per_client=settings.max_calls_per_client,
            max_abandoned=settings.max_abandoned_calls,
        )
        self.read_pool = WorkerPool(max_running=READ_THREADS, what="built-in reads", setting="nbmcp's read pool")
        self.views = ObjectViews(
            registry,
            self.outputs,
            image_max_px=settings.image_max_px,
            frame_limits=settings.frame_limits,
            run_builtin=self._run_builtin_read,
            run_user=self._run_user_read,
            run_limited=self._run_limited_read,
        )
        self._pipeline = CallPipeline(
            outputs=self.outputs,
            output_budget=settings.output_budget,
            image_max_px=settings.image_max_px,
            approval_policy=settings.approval_policy,
            approval_timeout=settings.approval_timeout,
            main_thread_timeout=settings.main_thread_timeout,
            main_thread_runner=main_thread_runner,
            tool_timeout=settings.tool_timeout or None,
            tools=self.tool_pool,
            reads=self.read_pool,
            background_tools={"execute"},
            result_meta={"view_object": TOOL_META},
        )
        self._activity = Activity(self._lock, on_new_client=lambda: self._changed("clients"))
        self._notifier = Notifier(self._lock, self.views.watched_value)
        self.call_listeners: list[Callable[[CallRecord], None]] = self._activity.call_listeners
        self._logging = logs.CallLogging()
        self.mcp = quiet_mcp_server(
            lambda: _RegistryBackedMCP(
                self.views,
                name="nbmcp",
                version=__version__,
                instructions=INSTRUCTIONS,
                icons=toolmeta.icons_of(check_icons(list(settings.icons) or None, label="the server")),
                subscriptions=self._notifier.bus,
                warn_on_duplicate_tools=False,
                warn_on_duplicate_prompts=False,
                middleware=[
                    self._activity.middleware,
                    self._notifier.middleware,
                    client_key_middleware,
                    owner_middleware(lambda _ctx: current_client_key.get()),  # a client's background tasks
                    self._logging.middleware,
                    structured.remember_arguments,
                ],
                # MCP Apps (view_object's ui://nbmcp/table page); tasks: a 2026 client with the extension gets
                # execute as a task it polls (nbmcp.tasks)
                extensions=[
                    apps_extension(),
                    tasks_extension(self._pipeline.background.tasks, grace=settings.task_grace),
                ],
            )
        )
        announce_list_changes(self.mcp)
        self._notifier.serve_subscribe_requests(self.mcp)
        self._logging.serve(self.mcp)
        Completions(registry, read_each=self.views.read_each).serve(self.mcp)
        logs.install()

        # Code execution in the user's kernel always asks the owner, and runs between cells.
        execute = builtin_tool(self._execute, name="execute", requires_approval=True, main_thread=True)
        # query is read-only: served in every mode, like the other read tools.
        self.query = QueryTool(registry, **settings.query_options)
        self._builtin_tools = {
            **self.views.read_tools(),
            "query": self.query.spec(),
            "view_object": view_tool(self.views),
            "execute": execute,
        }
        self._builtin_tools.update(self._pipeline.background.tools())  # task_*: served with execute
        self._unsubscribe = registry.subscribe(self._on_registry_event)
        self.sync_all()

    # -- lifecycle -----------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the transport runs on: notifications are sent from it."""
        self._notifier.attach_loop(loop)

    def close(self) -> None:
        self._unsubscribe()
        logs.uninstall()
        self._notifier.attach_loop(None)

    def app(self, *, path: str = "/mcp") -> Any:
        """The SDK's streamable-HTTP ASGI app (nbmcp's own security middleware goes in front)."""
        from mcp.server.transport_security import TransportSecuritySettings

        return self.mcp.streamable_http_app(
            streamable_http_path=path,
            # Host/Origin are checked by nbmcp.transport.SecurityMiddleware against the exact bound address.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    def snapshot(self) -> ServerSnapshot:
        """Mode, served tools, clients, recent calls and subscribed URIs, taken together under the lock."""
        with self._lock:
            return ServerSnapshot(
                mode=self._mode,
                served_tools=dict(self._served_tools),
                clients=self._activity.recent_clients(),
                calls=list(self._activity.calls),
                subscribed=self._notifier.subscribed_uris(),
                tool_pool=self.tool_pool.status(),
            )

    async def _run_builtin_read(self, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        return await _read_in(self.read_pool, key, functools.partial(fn, *args), self._pipeline.tool_timeout, None)

    async def _run_limited_read(self, key: str, fn: Callable[[], Any], seconds: float) -> Any:
        """One object's part of a read of many (:func:`.calls.untrusted.read_each`): ``ToolTimeout`` after ``seconds``,
        and at once while an earlier read of it is still stuck (one thread per hung object, not one per read)."""
        if self.read_pool.status().abandoned.get(key):
            raise ToolTimeout(seconds)
        return await self.read_pool.run_sync(key, fn, timeout=seconds)

    async def _run_user_read(self, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        call = functools.partial(fn, *args)
        return await _read_in(self.tool_pool, key, call, self._pipeline.tool_timeout, current_client_key.get())

    # -- what the panel and the magics set -----------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'read-only', 'tools' or 'execute', not {mode!r}")
        if mode == "execute" and self.execute_runner is None:
            raise ValueError("execute mode needs a kernel: load the extension with %load_ext nbmcp")
        with self._lock:
            self._mode = mode
        self.sync_tools()

    @property
    def approver(self) -> Approver | None:
        return self._pipeline.approver

    @approver.setter
    def approver(self, approver: Approver | None) -> None:
        self._pipeline.approver = approver

    @property
    def approval_listeners(self) -> list[Callable[[str, str, str, bool, str], None]]:
        """Told every approval decision: ``(tool, client, decided_by, approved, reason)`` (the audit log)."""
        return self._pipeline.approval_listeners

    @property
    def approval_timeout(self) -> float:
        """Seconds an approval waits for its answer (the panel and ``%mcp approval`` may change it)."""
        return self._pipeline.approval_timeout

    @approval_timeout.setter
    def approval_timeout(self, seconds: float) -> None:
        self._pipeline.approval_timeout = float(seconds)

    @property
    def approval_policy(self) -> str:
        return self._pipeline.approval_policy

    @approval_policy.setter
    def approval_policy(self, policy: str) -> None:
        self._pipeline.approval_policy = policy

    # -- change notifications ------------------------------------------------------------------

    def subscribed_uris(self) -> list[str]:
        return self._notifier.subscribed_uris()

    def check_objects(self) -> list[str]:
        """Fingerprint subscribed objects; announce the ones that changed. Runs after each cell."""
        return self._notifier.check_objects()

    def _changed(self, what: str) -> None:
        for listener in list(self.change_listeners):
            with contextlib.suppress(Exception):
                listener(what)

    def _announce(self, kind: str) -> None:
        self._changed(kind)
        self._notifier.announce_list(kind)

    # -- mirroring the registry ----------------------------------------------------------------

    def _desired_tools(self) -> dict[str, ToolSpec]:
        desired = {n: s for n, s in self._builtin_tools.items() if n not in EXECUTE_TOOLS or self._mode == "execute"}
        if self._mode != "read-only":
            desired.update({n: s for n, s in self.registry.snapshot().tools.items() if s.enabled})
        return desired

    def sync_tools(self) -> None:
        """Make the SDK's tools match the registry and mode; announce a change if there was one."""
        with self._lock:
            changed = _mirror(self._served_tools, self._desired_tools(), self._add_sdk_tool, self.mcp.remove_tool)
        if changed:
            self._announce("tools")

    def sync_prompts(self) -> None:
        """Make the SDK's prompts match the registry; announce a change if there was one."""
        with self._lock:
            desired = self.registry.snapshot().prompts
            changed = _mirror(self._served_prompts, desired, self._add_sdk_prompt, self.mcp.remove_prompt)
        if changed:
            self._announce("prompts")

    def sync_all(self) -> None:
        self.sync_tools()
        self.sync_prompts()

    def _on_registry_event(self, event: RegistryEvent) -> None:
        if event.kind == "tools":
            self.sync_tools()
        elif event.kind == "prompts":
            self.sync_prompts()
        else:  # objects and resources are read from the registry on demand: only the lists changed
            self._announce("resources")

    def _add_sdk_prompt(self, spec: PromptSpec) -> None:
        render = prompts.rendering(spec, self.views.read_resource, image_max_px=self.image_max_px)
        self.mcp.add_prompt(
            Prompt.from_function(render, name=spec.name, title=spec.title, description=spec.description)
        )

    def _add_sdk_tool(self, spec: ToolSpec) -> None:
        self.mcp.input_schemas.pop(spec.name, None)
        if spec.input_schema is not None:
            self.mcp.input_schemas[spec.name] = spec.input_schema
        self.mcp.add_tool(
            self._pipeline.shim(spec),
            name=spec.name,
            title=spec.title,
            description=spec.description or None,
            annotations=toolmeta.annotations_of(spec),
            icons=toolmeta.icons_of(spec.icons),
            meta=self._pipeline.result_meta.get(spec.name) if spec.builtin else None,
            structured_output=None if structured.output_metadata(spec) is not None else False,
        )

    def _execute(self, code: str, background: bool = False) -> Any:
        """Run Python code in the user's live kernel, between cells, and return its output. With
        background=true it returns a task id at once (for long code): then task_status, task_result, task_cancel.

        Args:
            code: the code to run; the value of a last expression is returned.
            background: run as a background task (approved now, run between cells, no 60 s limit).
        """
        if self.execute_runner is None:  # served only in execute mode, which needs a runner
            raise RuntimeError("execute needs a kernel: load the extension with %load_ext nbmcp")
        return self.execute_runner(code)


async def _read_in(pool: WorkerPool, uri: str, fn: Callable[[], Any], timeout: float | None, client: Any) -> Any:
    """A resource read in ``pool``; a refusal or a timeout is a JSON-RPC error that says which."""
    try:
        return await pool.run_sync(uri, fn, timeout=timeout, client=client)
    except ToolBusy as exc:
        raise MCPError(code=INTERNAL_ERROR, message=str(exc), data={"uri": uri}) from None
    except ToolTimeout as exc:
        message = f"reading {uri} did not finish within {exc.seconds:g} s (c.NbMCP.tool_timeout)"
        raise MCPError(code=INTERNAL_ERROR, message=message, data={"uri": uri}) from None


def _mirror(
    served: dict[str, Any], desired: dict[str, Any], add: Callable[[Any], None], remove: Callable[[str], None]
) -> bool:
    """Make ``served`` (what the SDK has) match ``desired`` by spec identity; True if anything changed.

    A redefined function is a new spec object, so it is removed and added again: the SDK keeps the old one
    on a duplicate name.
    """
    changed = False
    for name in list(served):
        if desired.get(name) is not served[name]:
            with contextlib.suppress(Exception):
                remove(name)
            del served[name]
            changed = True
    for name, spec in desired.items():
        if name not in served:
            add(spec)
            served[name] = spec
            changed = True
    return changed
