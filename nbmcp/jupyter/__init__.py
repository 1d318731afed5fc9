"""nbmcp's Jupyter Server extension: MCP behind Jupyter's own auth, for Binder, JupyterHub and JupyterLab.

- ``{base_url}nbmcp/mcp``: which notebook runs on which kernel, and code/inspection tools acting on a
  notebook's live kernel (``nbmcp serve``'s tools, bound to the Jupyter Server's kernels);
- ``{base_url}nbmcp/kernels/{kernel_id}/mcp``: the tools, resources and prompts a notebook serves after
  ``%load_ext nbmcp``, reachable through the server's URL (on Binder/JupyterHub the kernel's loopback port
  is not).

Enable with ``jupyter server extension enable nbmcp`` (``pip install nbmcp`` does it through
``etc/jupyter/jupyter_server_config.d/nbmcp.json``). Clients send the Jupyter token as
``Authorization: Bearer <token>`` (on JupyterHub: an API token of the user with the scope
``access:servers!user=<name>``; a refused request's 403 says which token is needed). Configure with
``c.NbMCPServerExtension``: ``read_only``, ``execute_timeout``, ``output_budget``.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import NbMCPServerExtension

    return [{"module": "nbmcp.jupyter", "app": NbMCPServerExtension}]


def _load_jupyter_server_extension(serverapp: Any) -> Any:
    from .app import NbMCPServerExtension

    return NbMCPServerExtension._load_jupyter_server_extension(serverapp)
