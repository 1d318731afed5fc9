"""The MCP server built from a :class:`~nbmcp.registry.Registry`.

Data flows one way: the registry (what the user published) is mirrored into an SDK ``MCPServer``;
registry events become MCP change notifications for both protocol eras. Exposed objects and user
resources are resolved at read time, because the SDK cannot remove a resource once added.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import hashlib
import inspect
import json
import pickle
import threading
import time
import typing
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged
from mcp.shared.uri_template import UriTemplate
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    EmptyResult,
    Resource,
    ResourceTemplate,
    SubscribeRequestParams,
    TextContent,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from .. import content, frames
from ..exceptions import ApprovalDenied, ToolTimeout
from ..sdk import announce_list_changes, connection_of, quiet_mcp_server
from . import capture
from .registry import PromptSpec, Registry, RegistryEvent, ResourceSpec, ToolSpec, parse_docstring

__all__ = ["OBJECT_TEMPLATES", "CallRecord", "ClientRecord", "NbMCPServer", "ServerSnapshot"]

OBJECTS_URI = "nbmcp://objects"
OBJECT_TEMPLATES = {
    "summary": "nbmcp://objects/{name}",
    "rows": "nbmcp://objects/{name}/rows/{offset}/{limit}",
    "arrow": "nbmcp://objects/{name}/arrow",
}
OUTPUTS_TEMPLATE = "nbmcp://outputs/{id}"
# Parsed once: every resource read is matched against them.
_OBJECT_MATCHERS = {kind: UriTemplate.parse(template) for kind, template in OBJECT_TEMPLATES.items()}
_OUTPUTS_MATCHER = UriTemplate.parse(OUTPUTS_TEMPLATE)
ARROW_MIME = "application/vnd.apache.arrow.stream"
MAX_REPR = 4_000

BUILTIN_READ_TOOLS = ("list_objects", "describe_object", "read_rows")

current_client: contextvars.ContextVar[str] = contextvars.ContextVar("nbmcp_client", default="unknown")
# Filled by the call pipeline, read by the middleware that records the call: how it ended, beyond isError.
_call_notes: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("nbmcp_call_notes", default=None)


@dataclass
class CallRecord:
    """One served request, for the panel, ``%mcp log`` and the audit log."""

    time: float
    client: str
    kind: str  # "tool", "resource", "prompt"
    name: str
    arguments_digest: str
    arguments_size: int
    duration_ms: float = 0.0
    outcome: str = "ok"  # ok | error | denied
    error: str | None = None


@dataclass
class ClientRecord:
    name: str
    version: str | None
    protocol_version: str
    first_seen: float
    last_seen: float
    requests: int = 0


@dataclass(frozen=True)
class ServerSnapshot:
    """What the server serves and has seen, at one moment: plain data, safe to hand to any thread."""

    mode: str
    served_tools: dict[str, ToolSpec]
    clients: list[ClientRecord]  # newest first
    calls: list[CallRecord]  # oldest first
    subscribed: list[str]


@dataclass
class _Subscription:
    """Who watches an object's URI, and the object's fingerprint when last checked."""

    legacy_sessions: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    listeners: int = 0
    fingerprint: str | None = None


def fingerprint(value: Any) -> str:
    """A digest that changes when ``value``'s content changes (frames hashed by content)."""
    if frames.is_frame(value):
        return frames.fingerprint(value)
    digest = hashlib.blake2b(digest_size=16)
    try:
        digest.update(pickle.dumps(value, protocol=5))
    except Exception:
        digest.update(repr(value).encode("utf-8", "replace"))
    digest.update(type(value).__qualname__.encode())
    return digest.hexdigest()


def _object_kind(value: Any) -> str:
    if frames.is_frame(value):
        return frames.frame_kind(value)
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _object_shape(value: Any) -> list[int] | None:
    if frames.is_frame(value):
        return list(frames.shape(value))
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        return list(shape)
    if isinstance(value, (list, tuple, dict, set, str)):
        return [len(value)]
    return None


class _NbMCP(MCPServer):
    """An MCPServer whose resources come from the registry at read time."""

    def __init__(self, owner: NbMCPServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    async def list_resources(self) -> list[Resource]:
        return self._owner.list_resources() + await super().list_resources()

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return self._owner.list_resource_templates() + await super().list_resource_templates()

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        result = await self._owner.read_resource(str(uri))
        if result is not None:
            return result
        return await super().read_resource(uri, context)


class NbMCPServer:
    """Mirror of a registry as an MCP server, plus the built-in object tools and resources.

    ``main_thread_runner`` runs a callable on the kernel's main thread between cells (given by the IPython
    extension); ``approver`` asks the notebook's owner (given by the widget panel).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        name: str = "nbmcp",
        instructions: str | None = None,
        output_budget: int = content.DEFAULT_OUTPUT_BUDGET,
        image_max_px: int = content.DEFAULT_IMAGE_MAX_PX,
        mode: str = "tools",
        approval_policy: str = "ask",
        approval_timeout: float = 120.0,
        main_thread_timeout: float = 60.0,
        main_thread_runner: Callable[[Callable[[], Any]], concurrent.futures.Future[Any]] | None = None,
        execute_runner: Callable[[str], Any] | None = None,
    ) -> None:
        self.registry = registry
        self.output_budget = output_budget
        self.image_max_px = image_max_px
        self.approval_policy = approval_policy
        self.approval_timeout = approval_timeout
        self.main_thread_timeout = main_thread_timeout
        self.main_thread_runner = main_thread_runner
        self.execute_runner = execute_runner
        self.approver: Callable[[str, dict[str, Any], str], Awaitable[bool]] | None = None
        self.outputs = content.OutputStore()
        self.bus = InMemorySubscriptionBus()
        self.mcp = quiet_mcp_server(
            lambda: _NbMCP(
                self,
                name=name,
                instructions=instructions or self._instructions(),
                subscriptions=self.bus,
                warn_on_duplicate_tools=False,
                warn_on_duplicate_prompts=False,
            )
        )
        lowlevel = self.mcp._lowlevel_server
        announce_list_changes(self.mcp)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._on_subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._on_unsubscribe)
        lowlevel.middleware.append(self._middleware)

        self._lock = threading.RLock()
        self._mode = mode
        self._served_tools: dict[str, ToolSpec] = {}
        self._served_prompts: dict[str, PromptSpec] = {}
        self._legacy_sessions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._subscriptions: dict[str, _Subscription] = {}
        self.clients: dict[int, ClientRecord] = {}
        self.calls: deque[CallRecord] = deque(maxlen=500)
        self.call_listeners: list[Callable[[CallRecord], None]] = []
        self.change_listeners: list[Callable[[str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[str] = set()
        self._pending_updates: set[str] = set()
        self._flush_scheduled = False

        self._builtin_tools = self._make_builtin_tools()
        self._unsubscribe = registry.subscribe(self._on_registry_event)
        self.sync_all()

    # -- lifecycle -----------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the transport runs on: notifications are sent from it."""
        self._loop = loop

    def close(self) -> None:
        self._unsubscribe()
        self._loop = None

    def app(self, *, path: str = "/mcp") -> Any:
        """The SDK's streamable-HTTP ASGI app (nbmcp's own security middleware goes in front)."""
        from mcp.server.transport_security import TransportSecuritySettings

        return self.mcp.streamable_http_app(
            streamable_http_path=path,
            # Host/Origin are checked by nbmcp.lifecycle.SecurityMiddleware against the exact bound address.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    @staticmethod
    def _instructions() -> str:
        return (
            "Tools and data from a live Jupyter kernel. Exposed objects (DataFrames and others) are listed by "
            "`list_objects` and readable with `describe_object` and `read_rows` (pages of rows), or as resources "
            "under nbmcp://objects. Values are live: they reflect the notebook's current state."
        )

    def snapshot(self) -> ServerSnapshot:
        """Mode, served tools, clients, recent calls and subscribed URIs, taken together under the lock."""
        with self._lock:
            return ServerSnapshot(
                mode=self._mode,
                served_tools=dict(self._served_tools),
                clients=sorted(self.clients.values(), key=lambda c: -c.last_seen),
                calls=list(self.calls),
                subscribed=list(self._subscriptions),
            )

    # -- permission mode -----------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in ("read-only", "tools", "execute"):
            raise ValueError(f"mode must be 'read-only', 'tools' or 'execute', not {mode!r}")
        if mode == "execute" and self.execute_runner is None:
            raise ValueError("execute mode needs a kernel: load the extension with %load_ext nbmcp")
        with self._lock:
            self._mode = mode
        self.sync_tools()

    # -- mirroring the registry ----------------------------------------------------------------

    def _desired_tools(self) -> dict[str, ToolSpec]:
        desired: dict[str, ToolSpec] = {}
        for spec in self._builtin_tools.values():
            if spec.name == "execute" and self._mode != "execute":
                continue
            desired[spec.name] = spec
        if self._mode != "read-only":
            user = self.registry.snapshot().tools
            desired.update({name: spec for name, spec in user.items() if spec.enabled})
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
        elif event.kind in ("resources", "objects"):
            self._announce("resources")

    def _add_sdk_prompt(self, spec: PromptSpec) -> None:
        self.mcp.add_prompt(
            Prompt.from_function(spec.fn, name=spec.name, title=spec.title, description=spec.description)
        )

    def _add_sdk_tool(self, spec: ToolSpec) -> None:
        shim = self._make_shim(spec)
        annotations = ToolAnnotations(read_only_hint=True) if spec.read_only else None
        self.mcp.add_tool(
            shim,
            name=spec.name,
            title=spec.title,
            description=spec.description or None,
            annotations=annotations,
            structured_output=False,
        )

    def _make_shim(self, spec: ToolSpec) -> Callable[..., Awaitable[CallToolResult]]:
        """An async function with the user's parameters (and their docs) that runs the call pipeline."""
        hints = typing.get_type_hints(spec.fn, include_extras=True)
        signature = inspect.signature(spec.fn)
        params = []
        for param in signature.parameters.values():
            annotation = hints.get(param.name, Any if param.annotation is param.empty else param.annotation)
            description = spec.param_descriptions.get(param.name)
            is_context = inspect.isclass(annotation) and issubclass(annotation, Context)
            if description and not is_context:
                annotation = Annotated[annotation, Field(description=description)]
            params.append(param.replace(annotation=annotation))
        context_param = next(
            (p.name for p in params if inspect.isclass(p.annotation) and issubclass(p.annotation, Context)),
            None,
        )

        async def shim(**kwargs: Any) -> CallToolResult:
            return await self._run_tool(spec, kwargs, context_param)

        shim.__signature__ = signature.replace(parameters=params, return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
        shim.__annotations__ = {p.name: p.annotation for p in params}
        shim.__name__ = spec.name
        shim.__doc__ = spec.description
        return shim

    # -- running a call ------------------------------------------------------------------------

    async def _run_tool(self, spec: ToolSpec, kwargs: dict[str, Any], context_param: str | None) -> CallToolResult:
        user_kwargs = {k: v for k, v in kwargs.items() if k != context_param}
        try:
            if spec.requires_approval:
                await self._approve(spec.name, user_kwargs)
            value, printed, displays = await self._invoke(spec, kwargs)
        except ApprovalDenied as exc:
            notes = _call_notes.get()
            if notes is not None:
                notes["denied"] = True
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        except ToolTimeout as exc:
            return CallToolResult(
                content=[TextContent(type="text", text=f"tool {spec.name!r} did not finish within {exc.seconds:g} s")],
                is_error=True,
            )
        except Exception as exc:
            converted = content.exception_converted(exc)
            return content.apply_budget(converted, self.output_budget, self.outputs).to_result()
        converted = content.convert(value, image_max_px=self.image_max_px)
        shown = [content.convert_mime_bundle(data, meta, image_max_px=self.image_max_px) for data, meta in displays]
        before = ([TextContent(type="text", text=printed.rstrip("\n"))] if printed.strip() else []) + [
            block for item in shown for block in item.content
        ]
        converted.content[:0] = before
        return content.apply_budget(converted, self.output_budget, self.outputs).to_result()

    async def _invoke(self, spec: ToolSpec, kwargs: dict[str, Any]) -> tuple[Any, str, list[Any]]:
        """Run the user's function; returns its value, what it printed and what it displayed."""
        fn = spec.fn
        if inspect.iscoroutinefunction(fn):
            with capture.capture_output() as buffer, anyio.move_on_after(spec.timeout) as scope:
                value = await fn(**kwargs)
            if scope.cancelled_caught:
                raise ToolTimeout(spec.timeout or 0)
            return value, buffer.getvalue(), []

        def call() -> tuple[Any, str, list[Any]]:
            with capture.capture_output() as buffer, capture.capture_displays() as displays:
                value = fn(**kwargs)
            return value, buffer.getvalue(), displays

        if spec.main_thread and self.main_thread_runner is not None:
            future = self.main_thread_runner(call)
            timeout = spec.timeout or self.main_thread_timeout
            done, _ = await asyncio.wait([asyncio.wrap_future(future)], timeout=timeout)
            if not done:
                future.cancel()  # still queued behind a cell: it will not run
                raise ToolTimeout(timeout)
            return future.result()
        with anyio.move_on_after(spec.timeout) as scope:
            # abandon_on_cancel: a tool that never returns must not hold the call (or the server) hostage.
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        raise ToolTimeout(spec.timeout or 0)

    async def _approve(self, tool: str, arguments: dict[str, Any]) -> None:
        policy = self.approval_policy
        if policy == "all":
            return
        if policy == "none":
            raise ApprovalDenied(f"the notebook's owner does not allow {tool!r} (approval policy: none)")
        if self.approver is None:
            raise ApprovalDenied(
                f"{tool!r} needs the notebook owner's approval, but no approval panel is open: "
                "ask them to run `%mcp panel` in the notebook"
            )
        approved = await self.approver(tool, arguments, current_client.get())
        if not approved:
            raise ApprovalDenied(f"the notebook's owner declined the call to {tool!r}")

    # -- built-in tools ------------------------------------------------------------------------

    def _make_builtin_tools(self) -> dict[str, ToolSpec]:
        def list_objects() -> dict[str, Any]:
            """List the objects the notebook exposes: name, kind, shape and description."""
            return {"objects": self.object_index()}

        def describe_object(name: str) -> Any:
            """Describe an exposed object: schema, shape, memory and first rows of a frame; else a bounded repr.

            Args:
                name: the exposed name, as listed by list_objects.
            """
            return _table_result(*self.summary(name))

        def read_rows(name: str, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> Any:
            """Read one page of rows of an exposed DataFrame.

            Args:
                name: the exposed name, as listed by list_objects.
                offset: index of the first row (0-based).
                limit: number of rows, at most 1000.
                columns: only these columns (default: all).
            """
            return _table_result(*self.rows(name, offset, limit, columns))

        def execute(code: str) -> Any:
            """Run Python code in the user's live kernel, between cells, and return its output.

            Args:
                code: the code to run; the value of a last expression is returned.
            """
            assert self.execute_runner is not None
            return self.execute_runner(code)

        specs = {}
        for fn, read_only in (
            (list_objects, True),
            (describe_object, True),
            (read_rows, True),
            (execute, False),
        ):
            doc, params = parse_docstring(fn)
            specs[fn.__name__] = ToolSpec(
                fn=fn,
                name=fn.__name__,
                description=doc,
                param_descriptions=params,
                read_only=read_only,
                main_thread=fn is execute,
                requires_approval=fn is execute,  # code execution in the user's kernel always asks the owner
                timeout=None,
                builtin=True,
            )
        return specs

    # -- exposed objects -----------------------------------------------------------------------

    def _exposed(self, name: str) -> Any:
        try:
            return self.registry.get_object(name)
        except KeyError as exc:
            raise LookupError(exc.args[0]) from None

    def _lookup(self, name: str) -> Any:
        return self._exposed(name).get()

    def object_index(self) -> list[dict[str, Any]]:
        exposed = [o for o in self.registry.snapshot().objects.values() if o.enabled]
        index = []
        for obj in exposed:
            entry: dict[str, Any] = {
                "name": obj.name,
                "description": obj.description,
                "uri": f"{OBJECTS_URI}/{obj.name}",
            }
            try:
                value = obj.get()
            except LookupError as exc:
                entry["error"] = str(exc)
            else:
                entry["kind"] = _object_kind(value)
                entry["shape"] = _object_shape(value)
            index.append(entry)
        return index

    def summary(self, name: str) -> tuple[str, dict[str, Any]]:
        """Markdown and JSON summary of an exposed object: schema, shape and head for frames."""
        exposed = self._exposed(name)
        value = exposed.get()
        if frames.is_frame(value):
            info = {"name": name, "description": exposed.description, **frames.summary(value)}
            return _frame_markdown(info), info
        info = {
            "name": name,
            "description": exposed.description,
            "kind": _object_kind(value),
            "shape": _object_shape(value),
            "repr": content.bounded_repr(value, MAX_REPR),
        }
        lines = [f"# {name}", f"{info['kind']}" + (f", shape {info['shape']}" if info["shape"] else "")]
        if exposed.description:
            lines.append(exposed.description)
        lines.append(f"```\n{info['repr']}\n```")
        return "\n\n".join(lines), info

    def rows(self, name: str, offset: int, limit: int, columns: list[str] | None = None) -> tuple[str, dict[str, Any]]:
        """One page of rows of an exposed frame: a markdown table and the JSON records."""
        value = self._lookup(name)
        if not frames.is_frame(value):
            raise TypeError(f"{name!r} is a {_object_kind(value)}, not a DataFrame; use describe_object({name!r})")
        records = frames.page(value, offset, limit, columns)
        total = frames.shape(value)[0]
        names = columns or [c["name"] for c in frames.schema(value)]
        info = {
            "name": name,
            "offset": offset,
            "limit": limit,
            "total_rows": total,
            "columns": names,
            "rows": records,
        }
        if records:
            header = f"Rows {offset} to {offset + len(records) - 1} of {total:,} in {name!r}"
            return header + "\n\n" + frames.markdown_table(records, names), info
        return f"No rows at offset {offset}: {name!r} has {total:,} rows", info

    # -- resources -----------------------------------------------------------------------------

    def list_resources(self) -> list[Resource]:
        resources = [
            Resource(
                uri=OBJECTS_URI,
                name="objects",
                description="Index of the objects the notebook exposes",
                mime_type="application/json",
            )
        ]
        registered = self.registry.snapshot()
        exposed = [o for o in registered.objects.values() if o.enabled]
        user = [r for r in registered.resources.values() if r.enabled and not r.is_template]
        for obj in exposed:
            resources.append(
                Resource(
                    uri=f"{OBJECTS_URI}/{obj.name}",
                    name=obj.name,
                    description=obj.description or f"Live object {obj.name!r} from the notebook",
                    mime_type="text/markdown",
                )
            )
        for spec in user:
            resources.append(
                Resource(uri=spec.uri, name=spec.name, description=spec.description, mime_type=spec.mime_type)
            )
        return resources

    def list_resource_templates(self) -> list[ResourceTemplate]:
        templates = [
            ResourceTemplate(
                uri_template=OBJECT_TEMPLATES["summary"],
                name="object",
                description="Summary of an exposed object: schema, shape and head for frames",
                mime_type="text/markdown",
            ),
            ResourceTemplate(
                uri_template=OBJECT_TEMPLATES["rows"],
                name="object-rows",
                description="One page of rows of an exposed frame (JSON records and a markdown table)",
                mime_type="application/json",
            ),
            ResourceTemplate(
                uri_template=OBJECT_TEMPLATES["arrow"],
                name="object-arrow",
                description="The whole frame as Arrow IPC, for bulk data",
                mime_type=ARROW_MIME,
            ),
            ResourceTemplate(
                uri_template=OUTPUTS_TEMPLATE,
                name="output",
                description="The full text of an output that was cut to the output budget",
                mime_type="text/plain",
            ),
        ]
        user = [r for r in self.registry.snapshot().resources.values() if r.enabled and r.is_template]
        templates += [
            ResourceTemplate(uri_template=s.uri, name=s.name, description=s.description, mime_type=s.mime_type)
            for s in user
        ]
        return templates

    async def read_resource(self, uri: str) -> list[ReadResourceContents] | None:
        """Contents of an nbmcp or user resource; None if the URI is neither (the SDK then answers)."""
        try:
            if uri == OBJECTS_URI:
                return [
                    ReadResourceContents(json.dumps({"objects": self.object_index()}, default=str), "application/json")
                ]
            for kind, matcher in _OBJECT_MATCHERS.items():
                match = matcher.match(uri)
                if match is not None and "/" not in str(match["name"]):
                    return await anyio.to_thread.run_sync(self._read_object, kind, match)
            match = _OUTPUTS_MATCHER.match(uri)
            if match is not None:
                try:
                    return [ReadResourceContents(self.outputs.get(str(match["id"])), "text/plain")]
                except KeyError as exc:
                    raise LookupError(str(exc.args[0] if exc.args else exc)) from None
            spec, params = self._match_user_resource(uri)
            if spec is None:
                return None
            return await self._read_user_resource(spec, params)
        except (LookupError, TypeError, ValueError) as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from None

    def _read_object(self, kind: str, match: dict[str, Any]) -> list[ReadResourceContents]:
        name = str(match["name"])
        if kind == "summary":
            markdown, info = self.summary(name)
            return [
                ReadResourceContents(markdown, "text/markdown"),
                ReadResourceContents(json.dumps(info, default=str), "application/json"),
            ]
        value = self._lookup(name)
        if not frames.is_frame(value):
            raise TypeError(f"{name!r} is a {_object_kind(value)}, not a DataFrame; read {OBJECTS_URI}/{name}")
        if kind == "arrow":
            return [ReadResourceContents(frames.to_arrow_ipc(value), ARROW_MIME)]
        try:
            offset, limit = int(match["offset"]), int(match["limit"])
        except ValueError:
            raise ValueError("offset and limit in the URI must be whole numbers") from None
        markdown, info = self.rows(name, offset, limit)
        return [
            ReadResourceContents(json.dumps(info, default=str), "application/json"),
            ReadResourceContents(markdown, "text/markdown"),
        ]

    def _match_user_resource(self, uri: str) -> tuple[ResourceSpec | None, dict[str, Any]]:
        specs = [s for s in self.registry.snapshot().resources.values() if s.enabled]
        for spec in specs:
            if not spec.is_template and spec.uri == uri:
                return spec, {}
        for spec in specs:
            if spec.is_template:
                match = UriTemplate.parse(spec.uri).match(uri)
                if match is not None:
                    return spec, dict(match)
        return None, {}

    async def _read_user_resource(self, spec: ResourceSpec, params: dict[str, Any]) -> list[ReadResourceContents]:
        def call() -> Any:
            return spec.fn(**params)

        try:
            value = (
                await spec.fn(**params)
                if inspect.iscoroutinefunction(spec.fn)
                else await anyio.to_thread.run_sync(call)
            )
        except Exception as exc:
            converted = content.exception_converted(exc)
            raise ResourceError(converted.content[0].text if converted.content else str(exc)) from None
        if isinstance(value, bytes):
            return [ReadResourceContents(value, spec.mime_type or "application/octet-stream")]
        if isinstance(value, str):
            return [ReadResourceContents(value, spec.mime_type or "text/plain")]
        converted = content.convert(value, image_max_px=self.image_max_px)
        text = "\n\n".join(c.text for c in converted.content if isinstance(c, TextContent))
        return [ReadResourceContents(text, spec.mime_type or "text/plain")]

    # -- subscriptions and change notifications ------------------------------------------------

    async def _on_subscribe(self, ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        with self._lock:
            sub = self._subscriptions.setdefault(uri, _Subscription())
            sub.legacy_sessions.add(ctx.session)
        await self._prime_fingerprint(uri)
        return EmptyResult()

    async def _on_unsubscribe(self, ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        with self._lock:
            sub = self._subscriptions.get(uri)
            if sub is not None:
                sub.legacy_sessions.discard(ctx.session)
                self._drop_if_unwatched(uri)
        return EmptyResult()

    def _drop_if_unwatched(self, uri: str) -> None:
        sub = self._subscriptions.get(uri)
        if sub is not None and not sub.listeners and not len(sub.legacy_sessions):
            del self._subscriptions[uri]

    def _object_of(self, uri: str) -> str | None:
        prefix = OBJECTS_URI + "/"
        if not uri.startswith(prefix):
            return None
        return uri[len(prefix) :].split("/", 1)[0] or None

    async def _prime_fingerprint(self, uri: str) -> None:
        name = self._object_of(uri)
        if name is None:
            return
        try:
            value = self._lookup(name)
            digest = await anyio.to_thread.run_sync(fingerprint, value)
        except Exception:
            digest = None
        with self._lock:
            sub = self._subscriptions.get(uri)
            if sub is not None and sub.fingerprint is None:
                sub.fingerprint = digest

    def subscribed_uris(self) -> list[str]:
        with self._lock:
            return list(self._subscriptions)

    def check_objects(self) -> list[str]:
        """Fingerprint subscribed objects; announce the ones that changed. Runs after each cell.

        Only subscribed objects are hashed: hashing a big frame costs ~100 ms, unsubscribed ones nothing.
        """
        with self._lock:
            if not self._subscriptions:
                return []
            watched = list(self._subscriptions.items())
        changed: list[str] = []
        digests: dict[str, str | None] = {}
        for uri, sub in watched:
            name = self._object_of(uri)
            if name is None:
                continue
            if name not in digests:
                try:
                    digests[name] = fingerprint(self._lookup(name))
                except Exception:
                    digests[name] = None
            digest = digests[name]
            if digest != sub.fingerprint:
                sub.fingerprint = digest
                changed.append(uri)
        for uri in changed:
            self._announce_update(uri)
        return changed

    async def _middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Track clients and sessions, count listen subscriptions, and record calls."""
        session = ctx.session
        connection = connection_of(session)
        client = self._note_client(ctx, connection)
        token = current_client.set(client)
        try:
            if ctx.method == "subscriptions/listen":
                return await self._listen(ctx, call_next)
            if ctx.method in ("tools/call", "resources/read", "prompts/get"):
                return await self._recorded(ctx, call_next, client)
            return await call_next(ctx)
        finally:
            current_client.reset(token)

    def _note_client(self, ctx: Any, connection: Any) -> str:
        params = getattr(connection, "client_params", None) if connection is not None else None
        info = getattr(params, "client_info", None)
        name = getattr(info, "name", None) or "unknown"
        if connection is None:
            return name
        protocol = getattr(connection, "protocol_version", "") or ""
        legacy = protocol not in MODERN_PROTOCOL_VERSIONS
        now = time.time()
        # Modern-era HTTP requests each get a fresh connection: key those by client name instead.
        key = id(connection) if legacy else hash((name, getattr(info, "version", None)))
        with self._lock:
            record = self.clients.get(key)
            if record is None:
                record = ClientRecord(name, getattr(info, "version", None), protocol, now, now)
                self.clients[key] = record
                new = True
            else:
                new = False
            record.last_seen = now
            record.requests += 1
            if legacy and ctx.method != "initialize":
                self._legacy_sessions[connection] = ctx.session
        if new:
            self._changed("clients")
        return name

    async def _listen(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        notifications = (ctx.params or {}).get("notifications") or {}
        uris = list(notifications.get("resourceSubscriptions") or [])
        with self._lock:
            for uri in uris:
                self._subscriptions.setdefault(uri, _Subscription()).listeners += 1
        for uri in uris:
            await self._prime_fingerprint(uri)
        try:
            return await call_next(ctx)
        finally:
            with self._lock:
                for uri in uris:
                    sub = self._subscriptions.get(uri)
                    if sub is not None:
                        sub.listeners -= 1
                        self._drop_if_unwatched(uri)

    async def _recorded(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]], client: str) -> Any:
        params = ctx.params or {}
        if ctx.method == "tools/call":
            kind, name, arguments = "tool", str(params.get("name")), params.get("arguments") or {}
        elif ctx.method == "resources/read":
            kind, name, arguments = "resource", str(params.get("uri")), {}
        else:
            kind, name, arguments = "prompt", str(params.get("name")), params.get("arguments") or {}
        encoded = json.dumps(arguments, sort_keys=True, default=str).encode()
        record = CallRecord(
            time=time.time(),
            client=client,
            kind=kind,
            name=name,
            arguments_digest=hashlib.sha256(encoded).hexdigest()[:16],
            arguments_size=len(encoded),
        )
        started = time.perf_counter()
        notes: dict[str, Any] = {}
        token = _call_notes.set(notes)
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            record.outcome, record.error = "error", f"{type(exc).__name__}: {exc}"[:200]
            raise
        else:
            # The SDK hands middleware the result as a wire dict.
            failed = result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False)
            if failed:
                record.outcome = "denied" if notes.get("denied") else "error"
                record.error = _first_text(result)[:200]
            return result
        finally:
            _call_notes.reset(token)
            record.duration_ms = (time.perf_counter() - started) * 1000
            with self._lock:
                self.calls.append(record)
            for listener in list(self.call_listeners):
                with contextlib.suppress(Exception):
                    listener(record)

    def _changed(self, what: str) -> None:
        for listener in list(self.change_listeners):
            with contextlib.suppress(Exception):
                listener(what)

    def _announce(self, kind: str) -> None:
        """Queue a list-changed notification; bursts (a cell defining ten tools) coalesce into one."""
        self._changed(kind)
        self._queue(kind=kind)

    def _announce_update(self, uri: str) -> None:
        self._queue(uri=uri)

    def _queue(self, *, kind: str | None = None, uri: str | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            if kind:
                self._pending.add(kind)
            if uri:
                self._pending_updates.add(uri)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._flush()))
        except RuntimeError:  # loop closed between the check and the call
            self._flush_scheduled = False

    async def _flush(self) -> None:
        with self._lock:
            kinds, self._pending = self._pending, set()
            updates, self._pending_updates = self._pending_updates, set()
            self._flush_scheduled = False
            sessions = list(self._legacy_sessions.values())
            legacy_subs = {
                uri: list(self._subscriptions[uri].legacy_sessions) for uri in updates if uri in self._subscriptions
            }
        events: list[Any] = []
        if "tools" in kinds:
            events.append(ToolsListChanged())
        if "prompts" in kinds:
            events.append(PromptsListChanged())
        if "resources" in kinds:
            events.append(ResourcesListChanged())
        events += [ResourceUpdated(uri=uri) for uri in sorted(updates)]
        for event in events:
            await self.bus.publish(event)
        for session in sessions:
            try:
                if "tools" in kinds:
                    await session.send_tool_list_changed()
                if "prompts" in kinds:
                    await session.send_prompt_list_changed()
                if "resources" in kinds:
                    await session.send_resource_list_changed()
            except Exception:
                self._forget_session(session)
        for uri, subscribers in legacy_subs.items():
            for session in subscribers:
                try:
                    await session.send_resource_updated(uri)
                except Exception:
                    self._forget_session(session)

    def _forget_session(self, session: Any) -> None:
        with self._lock:
            for connection, known in list(self._legacy_sessions.items()):
                if known is session:
                    del self._legacy_sessions[connection]
            for sub in self._subscriptions.values():
                sub.legacy_sessions.discard(session)


def _frame_markdown(info: dict[str, Any]) -> str:
    rows, cols = info["shape"]
    memory = info.get("memory_bytes")
    size = f", {memory / 1e6:.1f} MB" if memory else ""
    lines = [f"# {info['name']}", f"{info['kind']}, {rows:,} rows x {cols} columns{size}"]
    if info.get("description"):
        lines.append(info["description"])
    schema = [{"column": c["name"], "dtype": c["dtype"]} for c in info["columns"]]
    lines += ["## Columns", frames.markdown_table(schema, ["column", "dtype"])]
    head = info.get("head") or []
    if head:
        lines += [
            f"## First {len(head)} rows",
            frames.markdown_table(head, [c["name"] for c in info["columns"]]),
        ]
    return "\n\n".join(lines)


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


def _table_result(markdown: str, info: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=markdown)], structured_content=info)


def _first_text(result: Any) -> str:
    """The first text block of a tool result, as a wire dict or a CallToolResult."""
    if isinstance(result, dict):
        blocks = result.get("content") or []
        return next((b.get("text", "") for b in blocks if b.get("type") == "text"), "")
    return next((c.text for c in getattr(result, "content", []) if isinstance(c, TextContent)), "")
