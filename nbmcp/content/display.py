"""Values -> what a notebook shows for them, through IPython's own display formatter.

The formatter of the running IPython shell is used when there is one, so the user's registered formatters
(``ip.display_formatter.formatters["text/html"].for_type(...)``) and settings (``%precision``) apply;
outside IPython a plain ``DisplayFormatter`` does the same job. IPython is imported on first use only.

One difference from a notebook, on purpose: objects that display *themselves* (``_ipython_display_``)
are asked for their mime representations instead, because a conversion must never publish output into
the user's notebook as a side effect (tools run on worker threads, while the user's cell may be running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bundles import convert_mime_bundle
from .converted import Converted, bounded_repr
from .images import DEFAULT_IMAGE_MAX_PX

if TYPE_CHECKING:
    from IPython.core.formatters import DisplayFormatter

__all__ = ["convert_display", "display_data"]

_standalone: DisplayFormatter | None = None
# (the formatter we were built from, the view on it without the self-display escape hatch)
_view: tuple[DisplayFormatter, DisplayFormatter] | None = None


def _formatter() -> DisplayFormatter:
    """The shell's display formatter (or a standalone one), minus ``_ipython_display_``.

    The returned formatter shares the source's per-mime formatters and mime-bundle formatter (the same
    objects, so registrations made later are seen); only the escape hatch is replaced by a disabled one.
    """
    global _standalone, _view
    from IPython import get_ipython
    from IPython.core.formatters import DisplayFormatter, IPythonDisplayFormatter

    shell = get_ipython()
    if shell is not None:
        source = shell.display_formatter
    else:
        if _standalone is None:
            _standalone = DisplayFormatter()
        source = _standalone
    view = _view
    if (
        view is not None
        and view[0] is source
        and view[1].formatters is source.formatters
        and view[1].mimebundle_formatter is source.mimebundle_formatter
    ):
        return view[1]
    formatter = DisplayFormatter(
        formatters=source.formatters,
        mimebundle_formatter=source.mimebundle_formatter,
        ipython_display_formatter=IPythonDisplayFormatter(enabled=False),
    )
    _view = (source, formatter)
    return formatter


def display_data(value: Any, *, include_plain: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``value``'s mime bundle and metadata as IPython computes them (``DisplayFormatter.format``).

    ``include_plain=False`` leaves out ``text/plain``: the bundle is then empty unless ``value`` has a
    rich representation (``_repr_html_``, ``_repr_png_``, ``_repr_mimebundle_``, a registered
    formatter, ...), and no pretty-printing is spent on values that have none. Classes and proxies that
    answer every attribute have no rich representation (IPython checks for both).
    """
    data, metadata = _formatter().format(value, exclude=None if include_plain else ("text/plain",))
    return dict(data), dict(metadata)


def convert_display(value: Any, *, image_max_px: int = DEFAULT_IMAGE_MAX_PX) -> Converted:
    """What a notebook cell shows for ``value`` as its ``Out``, as MCP content: IPython's display formatter
    makes the mime bundle, :func:`convert_mime_bundle` picks one representation. So ``(5, 2)`` is the text
    ``(5, 2)`` (as ``nbmcp serve`` shows a kernel's result), a pandas or polars frame a markdown table plus
    structured rows, an image an image, and ``None`` nothing."""
    if value is None:  # IPython's displayhook shows nothing for None
        return Converted([])
    data, metadata = display_data(value)
    data.setdefault("text/plain", bounded_repr(value))  # a repr that raised left no text/plain
    return convert_mime_bundle(data, metadata, image_max_px=image_max_px)
