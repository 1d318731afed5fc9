"""The public Python API of the in-kernel server: decorators, ``expose``, and start/stop.

Light on purpose: importing it loads only the registry. The server, the MCP SDK and IPython load when a
server starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .registry import (
    PromptSpec,
    ResourceSpec,
    ToolSpec,
    caller_namespace,
    check_signature,
    default_registry,
    parse_docstring,
)

if TYPE_CHECKING:
    from .lifecycle import ServerInfo

__all__ = [
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
    confirm: bool = False,
    timeout: float | None = None,
    main_thread: bool = False,
) -> Callable[[F], F]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    confirm: bool = False,
    timeout: float | None = None,
    main_thread: bool = False,
) -> Any:
    """Publish a function as an MCP tool; returns the function unchanged.

    The schema comes from the type hints and defaults, the description from the docstring (an
    ``Args:`` section describes each parameter). Redefining the function replaces the tool.

    Args:
        name: tool name (default: the function's name).
        title: human-readable title.
        description: overrides the docstring.
        read_only: tell clients the tool changes nothing.
        confirm: ask the notebook's owner to approve each call.
        timeout: seconds before a call is abandoned with an error.
        main_thread: run on the kernel's main thread, between cells.
    """

    def register(func: F) -> F:
        check_signature(func, what="tool")
        doc, params = parse_docstring(func)
        tool_name = name or func.__name__
        if tool_name == "<lambda>":
            raise TypeError("a lambda has no name: use @nbmcp.tool(name=...)")
        default_registry.add_tool(
            ToolSpec(
                fn=func,
                name=tool_name,
                description=description if description is not None else doc,
                param_descriptions=params,
                title=title,
                read_only=read_only,
                confirm=confirm,
                timeout=timeout,
                main_thread=main_thread,
            )
        )
        return func

    return register(fn) if fn is not None else register


def prompt(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, title: str | None = None) -> Any:
    """Publish a function returning a string (or messages) as an MCP prompt."""

    def register(func: F) -> F:
        check_signature(func, what="prompt")
        doc, params = parse_docstring(func)
        default_registry.add_prompt(
            PromptSpec(fn=func, name=name or func.__name__, description=doc, param_descriptions=params, title=title)
        )
        return func

    return register(fn) if fn is not None else register


def resource(
    uri: str, *, name: str | None = None, description: str | None = None, mime_type: str | None = None
) -> Callable[[F], F]:
    """Publish a function's return value at ``uri``; ``{param}`` parts make it a template."""

    def register(func: F) -> F:
        check_signature(func, what="resource")
        doc, _ = parse_docstring(func)
        default_registry.add_resource(
            ResourceSpec(
                fn=func,
                uri=uri,
                name=name or func.__name__,
                description=description if description is not None else doc,
                mime_type=mime_type,
            )
        )
        return func

    return register


def expose(obj: Any, name: str | None = None, *, description: str = "") -> None:
    """Publish an object (or, given a string, the variable of that name) as live MCP resources.

    ``expose(df, "sales")`` follows the object: mutations are live. ``expose("sales")`` follows the
    name in the user namespace: rebinding ``sales = ...`` in a later cell is live too.
    """
    namespace = caller_namespace() if isinstance(obj, str) else None
    default_registry.expose(obj, name, description=description, namespace=namespace)


def unexpose(name: str) -> None:
    """Stop publishing the object exposed as ``name``."""
    default_registry.unexpose(name)


def start(port: int | None = None, token: str | None = None, ip: str | None = None, **options: Any) -> ServerInfo:
    """Start the MCP server on a background thread (or return the running one's info)."""
    from .extension import running_shell, start_in_shell
    from .lifecycle import start_server

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
    from .widgets import show_panel

    return show_panel()


def load_ipython_extension(ipython: Any) -> None:
    from .extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .extension import unload_ipython_extension as unload

    unload(ipython)
