"""Values and Jupyter mime bundles -> MCP content."""

from .convert import *  # noqa: F403
from .convert import __all__ as __all__
