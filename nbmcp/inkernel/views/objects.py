"""Exposed objects and user resources, as the in-kernel server shows them.

Views of exposed objects (an index, a summary, pages of rows, Arrow), the built-in read tools that reach
them (``list_objects``, ``describe_object``, ``read_rows``: many clients use tools only), the
``nbmcp://objects…`` and ``nbmcp://outputs/{id}`` resources, and the resources users publish with
``@nbmcp.resource``. Everything is resolved at read time from the registry: the SDK cannot remove a
resource once added, and the user's values change between reads.

Nothing here touches a user's object on the server's event loop: one object whose ``shape`` (or ``len``, or
schema) hangs would stop the server answering anyone. Reads of one object run in the built-in pool; reads of
many (the index, completion's columns) run each with a time limit (:meth:`ObjectViews.read_each`), and an
object that does not answer in time is marked in its own entry while the others answer.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio.to_thread
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, Resource, ResourceTemplate, TextContent

from ... import content, frames
from ..calls.untrusted import OBJECT_READ_SECONDS, ReadFailed, read_each, to_thread_limited
from ..registry import ExposedObject, Registry, ResourceSpec, ToolSpec, parse_docstring

__all__ = ["ARROW_MIME", "OBJECTS_URI", "OBJECT_TEMPLATES", "OUTPUTS_TEMPLATE", "Base64Blob", "ObjectViews"]

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
T = TypeVar("T")

_BUILTIN_TEMPLATES = [
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


@dataclass(frozen=True)
class Base64Blob:
    """Binary resource contents that are base64 text already (the Arrow read): the server puts ``text`` in the
    reply's ``blob`` as it is, where the SDK would encode bytes again (two more copies of a 32 MiB read)."""

    text: str


class ObjectViews:
    """What the server shows of the registry's objects and resources; ``outputs`` holds cut outputs."""

    def __init__(
        self,
        registry: Registry,
        outputs: content.OutputStore,
        *,
        image_max_px: int,
        frame_limits: frames.Limits | None = None,
        run_builtin: Callable[..., Awaitable[Any]] | None = None,
        run_user: Callable[..., Awaitable[Any]] | None = None,
        run_limited: Callable[[str, Callable[[], Any], float], Awaitable[Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.outputs = outputs
        self.image_max_px = image_max_px
        # How sync reads run, ``await run(uri, fn, *args)``: bounded pools (the server's), built-ins apart.
        self.run_builtin = run_builtin or _to_thread
        self.run_user = run_user or _to_thread
        # ``await run_limited(key, fn, seconds)``: a built-in read with its own time limit (the server's read pool).
        self.run_limited = run_limited or to_thread_limited
        self.object_read_seconds = OBJECT_READ_SECONDS
        self.frame_limits = frame_limits or frames.Limits()

    # -- views ---------------------------------------------------------------------------------

    def _exposed(self, name: str) -> ExposedObject:
        try:
            return self.registry.get_object(name)
        except KeyError as exc:
            raise LookupError(exc.args[0]) from None

    def lookup(self, name: str) -> Any:
        """The current value of the object exposed as ``name``; ``LookupError`` (listing what exists) if none."""
        return self._exposed(name).get()

    def watched_value(self, uri: str) -> tuple[str, Any] | None:
        """``(name, value)`` of the object an ``nbmcp://objects/{name}…`` URI shows; None for other URIs."""
        prefix = OBJECTS_URI + "/"
        name = uri[len(prefix) :].split("/", 1)[0] if uri.startswith(prefix) else ""
        return (name, self.lookup(name)) if name else None

    async def object_index(self) -> list[dict[str, Any]]:
        """Name, description, URI, kind and shape of every exposed object; an ``error`` instead in the entry of
        one that is gone, raises, or does not answer within :attr:`object_read_seconds`."""
        objects = [obj for obj in self.registry.snapshot().objects.values() if obj.enabled]
        reads = {obj.name: functools.partial(self._kind_and_shape, obj) for obj in objects}
        found = await self.read_each(reads, "kind and shape")
        index = []
        for obj in objects:
            entry: dict[str, Any] = {
                "name": obj.name,
                "description": obj.description,
                "uri": f"{OBJECTS_URI}/{obj.name}",
            }
            value = found[obj.name]
            if isinstance(value, ReadFailed):
                entry["error"] = value.message
            else:
                entry.update(value)
            index.append(entry)
        return index

    def _kind_and_shape(self, obj: ExposedObject) -> dict[str, Any]:
        value = obj.get()
        entry: dict[str, Any] = {"kind": self._kind(value)}
        try:
            entry["shape"] = self._shape(value)
        except Exception as exc:  # its kind is still worth knowing
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry

    async def read_each(self, reads: dict[str, Callable[[], T]], what: str) -> dict[str, T | ReadFailed]:
        """Each of ``reads`` (name -> a read of that object's ``what``) in the built-in pool, each within
        :attr:`object_read_seconds` (:func:`~nbmcp.inkernel.calls.untrusted.read_each`)."""
        return await read_each(self.run_limited, reads, what, self.object_read_seconds)

    def source(self, value: Any) -> frames.Source | None:
        """The frame adapter of ``value`` (any backend) under this server's limits; None if not a table."""
        return frames.source_for(value, self.frame_limits) if frames.is_source(value) else None

    def _kind(self, value: Any) -> str:
        source = self.source(value)
        return source.kind if source is not None else _object_kind(value)

    def _shape(self, value: Any) -> list[int | None] | None:
        source = self.source(value)
        return source.shape() if source is not None else _object_shape(value)

    def summary(self, name: str) -> tuple[str, dict[str, Any]]:
        """Markdown and JSON summary of an exposed object: schema, shape and head for frames."""
        exposed = self._exposed(name)
        value = exposed.get()
        source = self.source(value)
        if source is not None:
            info = {"name": name, "description": exposed.description, **frames.describe(source)}
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
        return _page(name, self._frame(name, hint=f"use describe_object({name!r})"), offset, limit, columns)

    def _frame(self, name: str, *, hint: str) -> frames.Source:
        value = self.lookup(name)
        source = self.source(value)
        if source is None:
            raise TypeError(f"{name!r} is a {_object_kind(value)}, not a DataFrame or table; {hint}")
        return source

    def arrow(self, name: str) -> list[ReadResourceContents]:
        """The object's rows as an Arrow IPC stream, cut at ``max_resource_bytes`` (and a JSON note); the stream
        comes base64-encoded as it was written (:class:`Base64Blob`), the text the reply carries."""
        source = self._frame(name, hint=f"read {OBJECTS_URI}/{name}")
        cap = self.frame_limits.max_resource_bytes
        export = frames.arrow_export(source, cap, as_base64=True)
        note = {"name": name, **export.fields(), "max_resource_bytes": cap}
        if export.truncated:
            note["message"] = (
                f"stopped after {export.rows:,} rows ({export.bytes:,} bytes): the Arrow resource is capped at "
                f"c.NbMCP.max_resource_bytes = {cap:,} bytes. Page "
                f"instead: {OBJECTS_URI}/{name}/rows/{{offset}}/{{limit}} or read_rows({name!r}, offset, limit, "
                "columns), or export fewer columns"
            )
        return [
            ReadResourceContents(cast(Any, Base64Blob(export.ipc_base64)), ARROW_MIME),
            ReadResourceContents(json.dumps(note), "application/json"),
        ]

    # -- built-in read tools -------------------------------------------------------------------

    def read_tools(self) -> dict[str, ToolSpec]:
        """``list_objects``, ``describe_object`` and ``read_rows``: the same data as the resources, as tools."""

        async def list_objects() -> dict[str, Any]:
            """List the objects the notebook exposes: name, kind, shape and description."""
            return {"objects": await self.object_index()}

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

        tools = [builtin_tool(fn, read_only=True) for fn in (list_objects, describe_object)]
        # A page is bounded by its limit (at most frames.MAX_PAGE_ROWS rows): its rows stay whole.
        tools.append(builtin_tool(read_rows, read_only=True, budget_structured=False))
        return {spec.name: spec for spec in tools}

    # -- resources -----------------------------------------------------------------------------

    def list_resources(self) -> list[Resource]:
        registered = self.registry.snapshot()
        resources = [
            Resource(
                uri=OBJECTS_URI,
                name="objects",
                description="Index of the objects the notebook exposes",
                mime_type="application/json",
            )
        ]
        resources += [
            Resource(
                uri=f"{OBJECTS_URI}/{obj.name}",
                name=obj.name,
                description=obj.description or f"Live object {obj.name!r} from the notebook",
                mime_type="text/markdown",
            )
            for obj in registered.objects.values()
            if obj.enabled
        ]
        resources += [
            Resource(uri=spec.uri, name=spec.name, description=spec.description, mime_type=spec.mime_type)
            for spec in registered.resources.values()
            if spec.enabled and not spec.is_template
        ]
        return resources

    def list_resource_templates(self) -> list[ResourceTemplate]:
        user = [r for r in self.registry.snapshot().resources.values() if r.enabled and r.is_template]
        return _BUILTIN_TEMPLATES + [
            ResourceTemplate(uri_template=s.uri, name=s.name, description=s.description, mime_type=s.mime_type)
            for s in user
        ]

    async def read_resource(self, uri: str) -> list[ReadResourceContents] | None:
        """Contents of an nbmcp or user resource; None if the URI is neither (the SDK then answers).

        An unknown object or output is ``ResourceNotFoundError`` (its message lists what exists); a bad
        request for one that exists (rows of a non-frame, a page that is not numbers) is invalid params.
        """
        try:
            if uri == OBJECTS_URI:
                index = json.dumps({"objects": await self.object_index()}, default=str)
                return [ReadResourceContents(index, "application/json")]
            for kind, matcher in _OBJECT_MATCHERS.items():
                match = matcher.match(uri)
                if match is not None and "/" not in str(match["name"]):
                    return await self.run_builtin(uri, self._read_object, kind, match)
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
        except LookupError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from None
        except (MCPError, ResourceError):
            raise
        except Exception as exc:  # a broken object (its shape or schema raises): a valid JSON-RPC error code
            message = f"reading {uri} failed: {type(exc).__name__}: {exc}"
            raise MCPError(code=INTERNAL_ERROR, message=message, data={"uri": uri}) from None

    def _read_object(self, kind: str, match: dict[str, Any]) -> list[ReadResourceContents]:
        name = str(match["name"])
        if kind == "summary":
            markdown, info = self.summary(name)
            return [
                ReadResourceContents(markdown, "text/markdown"),
                ReadResourceContents(json.dumps(info, default=str), "application/json"),
            ]
        if kind == "arrow":
            return self.arrow(name)
        value = self._frame(name, hint=f"read {OBJECTS_URI}/{name}")
        try:
            offset, limit = int(match["offset"]), int(match["limit"])
        except ValueError:
            raise ValueError("offset and limit in the URI must be whole numbers") from None
        markdown, info = _page(name, value, offset, limit)
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
            if inspect.iscoroutinefunction(spec.fn):
                value = await spec.fn(**params)
            else:
                value = await self.run_user(spec.uri, call)
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


async def _to_thread(key: str, fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(fn, *args)


def builtin_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    read_only: bool = False,
    requires_approval: bool = False,
    main_thread: bool = False,
    budget_structured: bool = True,
) -> ToolSpec:
    """A built-in tool's spec; its description is the docstring without the ``Args:`` section."""
    doc, params = parse_docstring(fn)
    return ToolSpec(
        fn=fn,
        name=name or fn.__name__,
        description=inspect.cleandoc(doc),
        param_descriptions=params,
        read_only=read_only,
        requires_approval=requires_approval,
        main_thread=main_thread,
        budget_structured=budget_structured,
        builtin=True,
    )


def _page(
    name: str, source: frames.Source, offset: int, limit: int, columns: list[str] | None = None
) -> tuple[str, dict[str, Any]]:
    info = {"name": name, **frames.page_info(source, offset, limit, columns)}
    records, count = info["rows"], frames.RowCount(info["total_rows"], info.get("rows_at_least") or info["total_rows"])
    if records:
        header = f"Rows {offset:,} to {offset + len(records) - 1:,} of {count.text()} in {name!r}"
        header += f"\nnote: {info['note']}" if "note" in info else ""
        return header + "\n\n" + frames.markdown_table(records, info["columns"]), info
    return f"No rows at offset {offset}: {name!r} has {count.text()} rows", info


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


def _frame_markdown(info: dict[str, Any]) -> str:
    cols = info["shape"][1]
    rows = frames.RowCount(info["total_rows"], info.get("rows_at_least") or info["total_rows"]).text()
    memory = info.get("memory_bytes")
    size = f", {memory / 1e6:.1f} MB" if memory else ""
    lines = [f"# {info['name']}", f"{info['kind']}, {rows} rows x {cols} columns{size}"]
    if info.get("description"):
        lines.append(info["description"])
    profile = {c["name"]: c for c in (info.get("profile") or {}).get("columns", [])}
    stats = ["nulls", "distinct", "min", "max", "mean", "top"]
    schema = [
        {"column": c["name"], "dtype": c["dtype"], **{k: _stat(profile.get(c["name"], {}), k) for k in stats}}
        for c in info["columns"]
    ]
    lines += ["## Columns", frames.markdown_table(schema, ["column", "dtype", *stats])]
    if (info.get("profile") or {}).get("note"):
        lines.append(f"Profile {info['profile']['note']}.")
    if info.get("profile_error"):
        lines.append(f"Profile failed: {info['profile_error']}")
    head = info.get("head") or []
    if head:
        lines += [
            f"## First {len(head)} rows",
            frames.markdown_table(head, [c["name"] for c in info["columns"]]),
        ]
    return "\n\n".join(lines)


def _stat(column: dict[str, Any], key: str) -> Any:
    value = column.get(key)
    if key == "top" and value:
        return ", ".join(f"{v['value']} ({v['count']})" for v in value[:3])
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _table_result(markdown: str, info: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=markdown)], structured_content=info)
