"""Frames of any backend: schema, pages, summaries, Arrow."""

from .pages import *  # noqa: F403
from .pages import __all__ as __all__
