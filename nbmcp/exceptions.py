"""nbmcp's errors. Each says who raises it and what an MCP client sees when it does.

Every class derives from :class:`NbMCPError`, so ``except nbmcp.NbMCPError`` catches what nbmcp itself
decided (as opposed to an error a user's tool raised, which reaches the client as that tool's error).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApprovalDenied",
    "ClientConnectError",
    "KernelDeadError",
    "KernelSessionError",
    "NbMCPError",
    "StaleNotebookError",
    "ToolTimeout",
    "UpstreamError",
]


class NbMCPError(Exception):
    """Base class of every error nbmcp raises on purpose."""


class ApprovalDenied(NbMCPError):
    """The notebook's owner declined a call, or could not be asked (no panel open, timeout, policy ``none``).

    Raised by the in-kernel approval broker; the client gets ``isError`` with the reason, and the audit log
    records the call as ``denied``.
    """


class ToolTimeout(NbMCPError):
    """nbmcp stopped waiting for a user tool (its ``timeout``, or the main-thread limit between cells).

    Distinct from a ``TimeoutError`` the tool raises itself, which is reported as the tool's own error. The
    client gets ``isError`` naming the limit that applied.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class KernelSessionError(NbMCPError, RuntimeError):
    """A kernel could not be started, reached or driven (``nbmcp serve``, the Jupyter Server extension).

    The client gets ``isError`` with the message, which says what to do next (start the kernel, fix the URL).
    """


class KernelDeadError(KernelSessionError):
    """The kernel process is gone. The client is told so and that ``restart`` starts a fresh one."""


class StaleNotebookError(NbMCPError):
    """A notebook changed on disk since the version the caller read (``notebook_edit``, ``notebook_run``).

    The client gets ``isError`` asking it to read the notebook again; nothing is written.
    """


class ClientConnectError(NbMCPError, ConnectionError):
    """:func:`nbmcp.client.session` could not connect (wrong token, nothing listening, the server exited).

    Raised in the caller's own process, with one line saying why and what to do about it.
    """


class UpstreamError(NbMCPError):
    """The Jupyter proxy could not decide where to forward a request (unknown kernel, no in-kernel server).

    Answered as HTTP ``status`` with a JSON ``message`` and ``details`` (e.g. the kernels that exist).
    """

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details
