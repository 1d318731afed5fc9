"""What the user has published: tools, prompts, resources and exposed objects.

The registry is plain Python: no IPython, no MCP. The server reads it and listens to its change
events; decorators and ``expose`` write to it. All methods are thread-safe, because the kernel's main
thread writes while the server's thread reads.
"""

from __future__ import annotations

import inspect
import sys
import threading
import typing
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Completer",
    "EmbeddedResourceRef",
    "ExposedObject",
    "PromptSpec",
    "Registry",
    "RegistryEvent",
    "RegistrySnapshot",
    "ResourceSpec",
    "ToolSpec",
    "default_registry",
    "parse_docstring",
]

EventKind = Literal["tools", "prompts", "resources", "objects"]
Completer = Callable[[str], Any] | list[str] | tuple[str, ...]
"""Completions for one argument: ``fn(prefix) -> iterable of values``, or a fixed list filtered by prefix."""


@dataclass(frozen=True)
class RegistryEvent:
    """A change to the registry: which list changed and, where it applies, which name."""

    kind: EventKind
    name: str | None = None


@dataclass
class ToolSpec:
    """A user function published as an MCP tool."""

    fn: Callable[..., Any]
    name: str
    description: str
    param_descriptions: dict[str, str] = field(default_factory=dict)
    title: str | None = None
    read_only: bool = False
    requires_approval: bool = False
    timeout: float | None = None
    main_thread: bool = False
    enabled: bool = True
    builtin: bool = False
    # False for results whose structured content is bounded already (a page of rows the client asked for):
    # the output budget then cuts only the text.
    budget_structured: bool = True
    # Hints for clients (MCP tool annotations); None leaves the protocol's default.
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None
    # Icons as given: URLs, ``{"src": ..., "mimeType": ..., "sizes": [...]}`` dicts or the SDK's ``Icon``.
    icons: list[Any] | None = None
    # A JSON Schema for the arguments, published verbatim and validated (when type hints cannot say it).
    input_schema: dict[str, Any] | None = None
    # None: an outputSchema when the return annotation is data; False: never; True: always (or an error).
    structured_output: bool | None = None


@dataclass
class PromptSpec:
    """A user function published as an MCP prompt."""

    fn: Callable[..., Any]
    name: str
    description: str
    param_descriptions: dict[str, str] = field(default_factory=dict)
    title: str | None = None
    complete: dict[str, Completer] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedResourceRef:
    """A prompt's request to embed the resource at ``uri`` (read when the prompt is rendered)."""

    uri: str


@dataclass
class ResourceSpec:
    """A user function published at a URI of the user's choosing (a template if the URI has ``{}``)."""

    fn: Callable[..., Any]
    uri: str
    name: str
    description: str
    mime_type: str | None = None
    enabled: bool = True
    complete: dict[str, Completer] = field(default_factory=dict)

    @property
    def is_template(self) -> bool:
        return "{" in self.uri


@dataclass
class ExposedObject:
    """An object published as live resources.

    Either an object reference (``target`` set: mutations are live) or a variable name looked up in
    ``namespace`` on every read (rebinding the name is live too).
    """

    name: str
    description: str = ""
    target: Any = None
    variable: str | None = None
    namespace: Mapping[str, Any] | None = None
    enabled: bool = True

    def get(self) -> Any:
        """The current value; ``LookupError`` if a variable is no longer defined."""
        if self.variable is None:
            return self.target
        assert self.namespace is not None
        try:
            return self.namespace[self.variable]
        except KeyError:
            raise LookupError(
                f"variable {self.variable!r} is not defined in the namespace any more; "
                f"define it again or call nbmcp.unexpose({self.name!r})"
            ) from None


@dataclass(frozen=True)
class RegistrySnapshot:
    """What the registry held at one moment: shallow copies, safe to read on any thread without the lock."""

    tools: dict[str, ToolSpec]
    prompts: dict[str, PromptSpec]
    resources: dict[str, ResourceSpec]
    objects: dict[str, ExposedObject]


def parse_docstring(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The description and per-parameter descriptions of a Google, NumPy or reST docstring."""
    doc = inspect.getdoc(fn) or ""
    if not doc:
        return "", {}
    import docstring_parser

    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return doc, {}
    params = {p.arg_name: p.description for p in parsed.params if p.description}
    if not params:
        return doc, {}
    # the parser cuts the "short description" at the first line break: a summary that wraps onto a second line
    # is one paragraph, not two
    summary = "\n\n" if parsed.blank_after_short_description else "\n"
    text = summary.join(p for p in (parsed.short_description, parsed.long_description) if p)
    returns = parsed.returns.description if parsed.returns and parsed.returns.description else None
    return "\n\n".join(p for p in (text, f"Returns: {returns}" if returns else "") if p), params


def check_completers(complete: Mapping[str, Any] | None, parameters: list[str], *, label: str) -> dict[str, Any]:
    """``complete`` checked: each key one of ``parameters``, each value a callable or a list of strings."""
    checked: dict[str, Any] = {}
    for argument, completer in (complete or {}).items():
        if argument not in parameters:
            raise ValueError(
                f"complete={{{argument!r}: ...}} of {label}: no argument named {argument!r}; "
                f"its arguments are: {', '.join(parameters) or '(none)'}"
            )
        if isinstance(completer, (list, tuple)):
            completer = [str(value) for value in completer]
        elif not callable(completer):
            raise TypeError(
                f"complete[{argument!r}] of {label} must be a function of the typed prefix or a list of values, "
                f"not {type(completer).__name__}"
            )
        checked[argument] = completer
    return checked


def check_icons(icons: list[Any] | None, *, label: str) -> list[Any] | None:
    """``icons`` checked: each a URL string, a dict with ``src``, or an object with a ``src`` (the SDK's Icon)."""
    if icons is None:
        return None
    if isinstance(icons, (str, dict)):
        icons = [icons]
    for icon in icons:
        src = (
            icon if isinstance(icon, str) else icon.get("src") if isinstance(icon, dict) else getattr(icon, "src", None)
        )
        if not isinstance(src, str) or not src.startswith(("https:", "http:", "data:")):
            raise ValueError(
                f"icon {icon!r} of {label}: give an https: or data: URL, or {{'src': url, 'mimeType': ...}}"
            )
    return list(icons)


def check_signature(fn: Callable[..., Any], *, what: str = "tool") -> inspect.Signature:
    """Reject signatures a JSON-schema tool call cannot fill, naming the parameter.

    MCP arguments arrive as a JSON object, so every parameter must be passable by keyword and have a
    default that a schema can state.
    """
    label = getattr(fn, "__qualname__", repr(fn))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot publish {label!r} as an MCP {what}: {exc}") from None
    for param in sig.parameters.values():
        where = f"parameter {param.name!r} of {label}"
        if param.kind is param.VAR_POSITIONAL:
            raise TypeError(f"{where}: *{param.name} cannot be filled from named MCP arguments; list the parameters")
        if param.kind is param.VAR_KEYWORD:
            raise TypeError(f"{where}: **{param.name} has no schema; list the parameters explicitly")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{where} is positional-only; MCP passes arguments by name, remove the '/'")
        if param.name.startswith("_"):
            raise TypeError(f"{where} starts with '_', which MCP argument names cannot")
        if param.default is not param.empty and not isinstance(param.default, Hashable):
            raise TypeError(f"{where} has an unhashable default {param.default!r}; use None and create it in the body")
    try:
        typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise TypeError(f"cannot evaluate the type hints of {label}: {exc}") from None
    return sig


class Registry:
    """Tools, prompts, resources and exposed objects, with change events."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.tools: dict[str, ToolSpec] = {}
        self.prompts: dict[str, PromptSpec] = {}
        self.resources: dict[str, ResourceSpec] = {}
        self.objects: dict[str, ExposedObject] = {}
        self._listeners: dict[object, Callable[[RegistryEvent], None]] = {}
        self._object_names: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # see object_names()

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[RegistryEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on every change; returns the unsubscribe function."""
        token = object()
        with self._lock:
            self._listeners[token] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(token, None)

        return unsubscribe

    def snapshot(self) -> RegistrySnapshot:
        """Copies of the four tables, taken together under the lock."""
        with self._lock:
            return RegistrySnapshot(dict(self.tools), dict(self.prompts), dict(self.resources), dict(self.objects))

    def emit(self, event: RegistryEvent) -> None:
        with self._lock:
            if event.kind == "objects":
                self._object_names = None
            listeners = list(self._listeners.values())
        for listener in listeners:
            listener(event)

    # -- tools ---------------------------------------------------------------------------------

    def add_tool(self, spec: ToolSpec) -> None:
        """Add or replace a tool (a redefined function replaces the tool of the same name)."""
        with self._lock:
            self.tools[spec.name] = spec
        self.emit(RegistryEvent("tools", spec.name))

    def remove_tool(self, name: str) -> None:
        with self._lock:
            if self.tools.pop(name, None) is None:
                raise KeyError(f"no tool named {name!r}; tools: {', '.join(sorted(self.tools)) or '(none)'}")
        self.emit(RegistryEvent("tools", name))

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        self._set_enabled("tools", name, enabled)

    def set_object_enabled(self, name: str, enabled: bool) -> None:
        self._set_enabled("objects", name, enabled)

    def set_resource_enabled(self, uri: str, enabled: bool) -> None:
        self._set_enabled("resources", uri, enabled)

    def _set_enabled(self, kind: Literal["tools", "objects", "resources"], key: str, enabled: bool) -> None:
        """Serve or hide an entry without forgetting it (the panel's toggles)."""
        with self._lock:
            item = getattr(self, kind)[key]
            if item.enabled == enabled:
                return
            item.enabled = enabled
        self.emit(RegistryEvent(kind, key))

    # -- prompts -------------------------------------------------------------------------------

    def add_prompt(self, spec: PromptSpec) -> None:
        with self._lock:
            self.prompts[spec.name] = spec
        self.emit(RegistryEvent("prompts", spec.name))

    def remove_prompt(self, name: str) -> None:
        with self._lock:
            if self.prompts.pop(name, None) is None:
                raise KeyError(f"no prompt named {name!r}; prompts: {', '.join(sorted(self.prompts)) or '(none)'}")
        self.emit(RegistryEvent("prompts", name))

    # -- resources -----------------------------------------------------------------------------

    def add_resource(self, spec: ResourceSpec) -> None:
        with self._lock:
            self.resources[spec.uri] = spec
        self.emit(RegistryEvent("resources", spec.uri))

    # -- exposed objects -----------------------------------------------------------------------

    def expose(self, obj: Any, name: str, *, description: str = "") -> ExposedObject:
        """Publish the value ``obj`` (any type, strings included) under ``name``: mutations are live."""
        if not name:
            raise ValueError("expose(obj) needs a name: nbmcp.expose(df, 'sales')")
        return self._publish(ExposedObject(name, description, target=obj))

    def expose_variable(
        self, variable: str, namespace: Mapping[str, Any], *, name: str | None = None, description: str = ""
    ) -> ExposedObject:
        """Publish the variable ``variable`` of ``namespace``, looked up on every read: rebinding it is live."""
        if variable not in namespace:
            raise NameError(f"name {variable!r} is not defined; assign it first or pass the object itself")
        return self._publish(ExposedObject(name or variable, description, variable=variable, namespace=namespace))

    def _publish(self, exposed: ExposedObject) -> ExposedObject:
        if not exposed.name.isidentifier():
            raise ValueError(f"object name {exposed.name!r} must be a Python identifier (it goes into URIs)")
        with self._lock:
            self.objects[exposed.name] = exposed
        self.emit(RegistryEvent("objects", exposed.name))
        return exposed

    def unexpose(self, name: str) -> None:
        with self._lock:
            if self.objects.pop(name, None) is None:
                raise KeyError(self.unknown_object_message(name))
        self.emit(RegistryEvent("objects", name))

    def get_object(self, name: str) -> ExposedObject:
        with self._lock:
            exposed = self.objects.get(name)
        if exposed is None or not exposed.enabled:
            raise KeyError(self.unknown_object_message(name))
        return exposed

    def object_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The enabled objects' names sorted case-insensitively, and the same names case-folded (for prefix
        search by bisection): kept until the objects change, since a client completes on every keystroke."""
        with self._lock:
            if self._object_names is None:
                names = sorted((n for n, o in self.objects.items() if o.enabled), key=lambda n: (n.casefold(), n))
                self._object_names = (tuple(names), tuple(n.casefold() for n in names))
            return self._object_names

    def unknown_object_message(self, name: str) -> str:
        with self._lock:
            names = sorted(n for n, o in self.objects.items() if o.enabled)
        return f"no exposed object named {name!r}; exposed: {', '.join(names) or '(none: call nbmcp.expose)'}"

    def clear(self) -> None:
        with self._lock:
            self.tools.clear()
            self.prompts.clear()
            self.resources.clear()
            self.objects.clear()
        for kind in ("tools", "prompts", "resources", "objects"):
            self.emit(RegistryEvent(kind))  # type: ignore[arg-type]


def caller_namespace(depth: int = 2) -> dict[str, Any]:
    """The user namespace: IPython's when a shell runs, else the calling frame's globals."""
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        shell = ipython.get_ipython()
        if shell is not None:
            return shell.user_ns
    return sys._getframe(depth).f_globals


default_registry = Registry()
