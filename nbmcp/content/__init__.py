"""One converter from Python values and Jupyter outputs to MCP content, plus the output budget.

Used for tool results, resource reads and kernel outputs alike:

- :func:`convert` — any Python value (text, JSON-able data, frames, figures, images, display-protocol
  objects, MCP content) -> :class:`Converted` (:mod:`.values`);
- :func:`convert_display` — what a notebook cell shows for a value as its ``Out`` (:mod:`.display`);
- :func:`convert_mime_bundle` / :func:`convert_outputs` — Jupyter ``data`` bundles / nbformat outputs
  (:mod:`.bundles`), with tables (:mod:`.tables`) and images (:mod:`.images`);
- :func:`error_converted` / :func:`exception_converted` — errors, with short ANSI-free tracebacks
  (:mod:`.tracebacks`, :mod:`.terminal`);
- :func:`apply_budget` — cap the text of one answer, keep head and tail, park the full text in an
  :class:`OutputStore` readable at ``nbmcp://outputs/{id}`` (:mod:`.budget`).

Imports only the ground floor (:mod:`nbmcp.frames`); IPython is imported on first use of the display
formatter, never by ``import nbmcp.content``.
"""

from .budget import DEFAULT_OUTPUT_BUDGET, MAX_IMAGES, OUTPUT_URI_PREFIX, OutputStore, apply_budget
from .bundles import convert_mime_bundle, convert_outputs
from .converted import Converted, bounded_repr
from .display import convert_display
from .images import DEFAULT_IMAGE_MAX_PX, resize_image
from .tables import FRAME_MAX_COLUMNS
from .terminal import join_stream_text, strip_ansi
from .tracebacks import error_converted, exception_converted
from .values import convert

__all__ = [
    "DEFAULT_IMAGE_MAX_PX",
    "DEFAULT_OUTPUT_BUDGET",
    "FRAME_MAX_COLUMNS",
    "MAX_IMAGES",
    "OUTPUT_URI_PREFIX",
    "Converted",
    "OutputStore",
    "apply_budget",
    "bounded_repr",
    "convert",
    "convert_display",
    "convert_mime_bundle",
    "convert_outputs",
    "error_converted",
    "exception_converted",
    "join_stream_text",
    "resize_image",
    "strip_ansi",
]
