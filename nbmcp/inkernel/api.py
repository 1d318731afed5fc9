"""The public Python API of the in-kernel server: decorators, ``expose``, and start/stop.

Light on purpose: importing it loads only the registry. The server, the MCP SDK and IPython load when a
server starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .registry import (
    Completer,
    EmbeddedResourceRef,
    PromptSpec,
    ResourceSpec,
    ToolSpec,
    caller_namespace,
    check_completers,
    check_icons,
    check_signature,
    default_registry,
    parse_docstring,
)

if TYPE_CHECKING:
    from .lifecycle import ServerInfo

__all__ = [
    "embed_resource",
    "expose",
    "info",
    "load_ipython_extension",
    "panel",
    "prompt",
    "resource",
    "start",
    "stop",
    "tool",
    "unexpose",
    "unload_ipython_extension",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    requires_approval: bool = False,
    timeout: float | None = None,
    main_thread: bool = False,
    confirm: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
    icons: list[Any] | None = None,
    input_schema: Mapping[str, Any] | None = None,
    structured_output: bool | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    requires_approval: bool = False,
    timeout: float | None = None,
    main_thread: bool = False,
    confirm: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
    icons: list[Any] | None = None,
    input_schema: Mapping[str, Any] | None = None,
    structured_output: bool | None = None,
) -> Any:
    """Publish a function as an MCP tool; returns the function unchanged.

    The schema comes from the type hints and defaults, the description from the docstring (an
    ``Args:`` section describes each parameter). Redefining the function replaces the tool.

    Args:
        name: tool name (default: the function's name).
        title: human-readable title.
        description: overrides the docstring.
        read_only: tell clients the tool changes nothing.
        requires_approval: each call waits for the notebook owner's approval (in the panel, ``%mcp panel``).
        timeout: seconds before a call is abandoned with an error.
        main_thread: run on the kernel's main thread, between cells.
        confirm: deprecated spelling of ``requires_approval``.
        destructive: hint that the tool may destroy data (MCP ``destructiveHint``).
        idempotent: hint that repeating a call changes nothing more (``idempotentHint``).
        open_world: hint that the tool reaches outside the notebook, e.g. the web (``openWorldHint``).
        icons: icons for clients: URLs (``https:`` or ``data:``) or ``{"src", "mimeType", "sizes"}`` dicts.
        input_schema: a JSON Schema for the arguments, published verbatim (``$defs``, ``oneOf``,
            ``additionalProperties``...) and checked on every call; its properties must be parameters.
        structured_output: ``None`` (default): an ``outputSchema`` and validated ``structuredContent`` when the
            return annotation is data (TypedDict, dataclass, pydantic model, ``dict[str, X]``, ``list[X]``);
            ``False``: never; ``True``: also for other annotations the SDK can model (``-> int``).
    """
    if confirm is not None:
        warnings.warn(
            "@nbmcp.tool(confirm=...) is deprecated: write @nbmcp.tool(requires_approval=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        requires_approval = requires_approval or confirm

    def register(func: F) -> F:
        check_signature(func, what="tool")
        doc, params = parse_docstring(func)
        tool_name = name or func.__name__
        if tool_name == "<lambda>":
            raise TypeError("a lambda has no name: use @nbmcp.tool(name=...)")
        schema = None
        if input_schema is not None:
            from .protocol.structured import check_input_schema

            schema = check_input_schema(input_schema, func, label=f"tool {tool_name!r}")
        default_registry.add_tool(
            ToolSpec(
                fn=func,
                name=tool_name,
                description=description if description is not None else doc,
                param_descriptions=params,
                title=title,
                read_only=read_only,
                requires_approval=requires_approval,
                timeout=timeout,
                main_thread=main_thread,
                destructive=destructive,
                idempotent=idempotent,
                open_world=open_world,
                icons=check_icons(icons, label=f"tool {tool_name!r}"),
                input_schema=schema,
                structured_output=structured_output,
            )
        )
        return func

    return register(fn) if fn is not None else register


def prompt(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    title: str | None = None,
    complete: Mapping[str, Completer] | None = None,
) -> Any:
    """Publish a function as an MCP prompt.

    It may return a string, a list of messages (``{"role": ..., "content": ...}`` dicts or the SDK's message
    objects), or content: a matplotlib figure or PIL image, MCP content blocks, or a list mixing them.

    Args:
        name: prompt name (default: the function's name).
        title: human-readable title.
        complete: completions offered for arguments, ``{"column": lambda prefix: [...]}`` or
            ``{"region": ["EU", "US"]}`` (a fixed list, filtered by what the user typed).
    """

    def register(func: F) -> F:
        sig = check_signature(func, what="prompt")
        doc, params = parse_docstring(func)
        label = f"prompt {name or func.__name__!r}"
        default_registry.add_prompt(
            PromptSpec(
                fn=func,
                name=name or func.__name__,
                description=doc,
                param_descriptions=params,
                title=title,
                complete=check_completers(complete, list(sig.parameters), label=label),
            )
        )
        return func

    return register(fn) if fn is not None else register


def resource(
    uri: str,
    *,
    name: str | None = None,
    description: str | None = None,
    mime_type: str | None = None,
    complete: Mapping[str, Completer] | None = None,
) -> Callable[[F], F]:
    """Publish a function's return value at ``uri``; ``{param}`` parts make it a template.

    ``complete`` offers completions for a template's parameters, as for :func:`prompt`.
    """

    def register(func: F) -> F:
        sig = check_signature(func, what="resource")
        doc, _ = parse_docstring(func)
        default_registry.add_resource(
            ResourceSpec(
                fn=func,
                uri=uri,
                name=name or func.__name__,
                description=description if description is not None else doc,
                mime_type=mime_type,
                complete=check_completers(complete, list(sig.parameters), label=f"resource {uri!r}"),
            )
        )
        return func

    return register


def embed_resource(uri: str) -> EmbeddedResourceRef:
    """In a prompt's messages: the resource at ``uri`` (e.g. ``nbmcp://objects/sales/rows/0/20``, a page of an
    exposed frame), embedded in the message when the prompt is rendered."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ValueError(f"embed_resource() needs a resource URI such as 'nbmcp://objects/sales', not {uri!r}")
    return EmbeddedResourceRef(uri)


_NOTHING: Any = object()


@overload
def expose(obj: Any, name: str, *, description: str = "") -> None: ...
@overload
def expose(*, variable: str, name: str | None = None, description: str = "") -> None: ...
def expose(obj: Any = _NOTHING, name: str | None = None, *, variable: str | None = None, description: str = "") -> None:
    """Publish a value, or a variable of the notebook, as live MCP resources (``nbmcp://objects/{name}``).

    ``expose(df, "sales")`` publishes the value (any value, a string too): mutations are live.
    ``expose(variable="sales")`` follows the variable in the caller's namespace: rebinding ``sales = ...`` in a
    later cell is live too; ``name`` defaults to the variable's name.

    The old spelling ``expose("sales")`` (one string, no name) still follows the variable, with a
    ``DeprecationWarning``.
    """
    if variable is not None:
        if obj is not _NOTHING:
            raise TypeError("expose() takes a value or variable=..., not both")
        default_registry.expose_variable(variable, caller_namespace(), name=name, description=description)
        return
    if obj is _NOTHING:
        raise TypeError("expose() needs a value and a name, e.g. expose(df, 'sales'), or variable='sales'")
    if isinstance(obj, str) and name is None:
        warnings.warn(
            f"expose({obj!r}) is deprecated: write expose(variable={obj!r}) to follow the variable, "
            f"or expose(value, {obj!r}) to publish a value",
            DeprecationWarning,
            stacklevel=2,
        )
        default_registry.expose_variable(obj, caller_namespace(), description=description)
        return
    default_registry.expose(obj, name, description=description)


def unexpose(name: str) -> None:
    """Stop publishing the object exposed as ``name``."""
    default_registry.unexpose(name)


def start(port: int | None = None, token: str | None = None, ip: str | None = None, **options: Any) -> ServerInfo:
    """Start the MCP server on a background thread (or return the running one's info)."""
    from .lifecycle import start_server
    from .shell import running_shell, start_in_shell

    shell = running_shell()
    if shell is not None:
        return start_in_shell(shell, port=port, token=token, ip=ip, **options)
    return start_server(port=port, token=token, ip=ip, **options)


def stop() -> None:
    """Stop the running server: frees the port, joins its thread, removes the connection file."""
    from .lifecycle import stop_server

    stop_server()


def info() -> ServerInfo | None:
    """The running server's info, or None."""
    from .lifecycle import running_info

    return running_info()


def panel() -> Any:
    """An ipywidgets panel: server state, clients, tools, live calls and approvals."""
    from .oversight.panel import show_panel

    return show_panel()


def load_ipython_extension(ipython: Any) -> None:
    from .extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .extension import unload_ipython_extension as unload

    unload(ipython)
