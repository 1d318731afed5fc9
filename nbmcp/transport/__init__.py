"""How clients reach nbmcp: the one mapping of transport names (:data:`TRANSPORTS`), HTTP endpoints
(:mod:`.http`: loopback names, Host/Origin/token checks, the one endpoint builder and uvicorn runner) and
stdio (:mod:`.stdio`: the bounded line reader; imported by name, it loads the MCP SDK).

A new transport goes here: its module in this package and its entry in :data:`TRANSPORTS`. That entry is
what ``nbmcp serve --transport`` offers and what ``ServeOptions.transport`` accepts; ``nbmcp serve`` then
needs a runner for it (``nbmcp.serve.run.RUNNERS``, which a test keeps in step with this mapping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .http import (
    Endpoint,
    RunningServer,
    SecurityMiddleware,
    bind_socket,
    loopback_names,
    open_endpoint,
    serve_app,
    serve_in_thread,
    uvicorn_server,
)

__all__ = [
    "TRANSPORTS",
    "Endpoint",
    "RunningServer",
    "SecurityMiddleware",
    "Transport",
    "TransportName",
    "bind_socket",
    "loopback_names",
    "open_endpoint",
    "serve_app",
    "serve_in_thread",
    "uvicorn_server",
]


@dataclass(frozen=True)
class Transport:
    """What the rest of nbmcp needs to know of a transport."""

    help: str  # how ``nbmcp serve --help`` describes it
    one_client: bool  # its one client launched this process: one kernel, shared (else a kernel per client)
    stderr_seen: bool  # the client shows our stderr: a failed start can be said there (else in the session's answers)


TRANSPORTS: dict[str, Transport] = {
    "stdio": Transport(
        "the client launches `nbmcp serve` and talks over stdin/stdout", one_client=True, stderr_seen=False
    ),
    "http": Transport(
        "streamable HTTP at the URL printed on stderr, behind a bearer token; a kernel per client unless --shared",
        one_client=False,
        stderr_seen=True,
    ),
}

# The names as a type, built from the mapping: ``ServeOptions.transport`` and the CLI's choices are one list.
TransportName = Literal[tuple(TRANSPORTS)]  # type: ignore[valid-type]
