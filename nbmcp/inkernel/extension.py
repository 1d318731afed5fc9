"""The IPython extension: ``%load_ext nbmcp`` starts the in-kernel server, ``%unload_ext nbmcp`` stops it."""

from __future__ import annotations

import atexit
from typing import Any

from . import lifecycle
from .shell import banner, start_in_shell, unhook_shell

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%mcp``, start the server with the shell's hooks, and print where it listens (once)."""
    from .magics import NbMCPMagics

    ipython.register_magics(NbMCPMagics)
    already = lifecycle.running_info() is not None
    info = start_in_shell(ipython)
    if not already:
        print(banner(info))
    # Once per process, however often the extension is reloaded: the connection file goes at kernel exit.
    atexit.unregister(lifecycle.stop_server)
    atexit.register(lifecycle.stop_server)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop the server: port freed, threads joined, connection file removed."""
    unhook_shell(ipython)
    lifecycle.stop_server()
    print("nbmcp: MCP server stopped")
