"""Which kernel a request acts on: ``nbmcp serve``'s options, kernel handles and the kernel provider.

One shared kernel (stdio, ``--shared``, ``--existing``, requests of the sessionless 2026 protocol era), or
-- HTTP, handshake-era sessions -- one kernel per client session, started on its first call and shut down
when the session ends (the SDK unwinds the connection's exit stack on DELETE, idle timeout or crash).
Kernels nbmcp started are shut down when the server exits; attached kernels never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from .. import content
from ..exceptions import KernelSessionError
from ..sdk import connection_of
from .execution import ExecutionOutcome
from .session import KernelSession

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from .recorder import SessionRecorder

__all__ = ["KernelHandle", "KernelProvider", "KernelSource", "ServeOptions", "attach_kernel"]

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """Everything ``nbmcp serve`` can be told (see ``nbmcp serve --help``)."""

    kernel_name: str = "python3"
    root: Path = field(default_factory=Path.cwd)
    existing: str | bool | None = None  # True: newest connection file (or newest remote kernel)
    server_url: str | None = None
    server_token: str | None = None
    kernel_env: dict[str, str] = field(default_factory=dict)  # sent when starting a kernel on --server-url
    notebook: Path | None = None
    record: bool = True
    timeout: float = 60.0
    output_budget: int = content.DEFAULT_OUTPUT_BUDGET
    image_max_px: int = content.DEFAULT_IMAGE_MAX_PX
    read_only: bool = False
    shared: bool = False
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None

    @property
    def attaching(self) -> bool:
        return self.existing not in (None, False)


class KernelHandle:
    """A kernel and the notebook its executions are recorded in."""

    def __init__(self, session: KernelSession, recorder: SessionRecorder | None) -> None:
        self.session = session
        self.recorder = recorder

    def record(self, code: str, outcome: ExecutionOutcome) -> None:
        if self.recorder is None:
            return
        try:
            status = outcome.status if outcome.status != "ok" else None
            self.recorder.record(code, outcome.outputs, outcome.execution_count, status=status)
        except Exception:  # recording must never fail an execution
            log.warning("could not record the execution in %s", self.recorder.path, exc_info=True)

    async def close(self) -> None:
        try:
            await self.session.shutdown()
        finally:
            if self.recorder is not None:
                with contextlib.suppress(Exception):
                    await anyio.to_thread.run_sync(self.recorder.close)


class KernelSource(Protocol):
    """Where the tools get the kernel of a request: :class:`KernelProvider`, or the Jupyter Server's kernels."""

    async def get(self, ctx: Context | None) -> KernelHandle: ...


async def attach_kernel(connection_file: str | Path, *, record_to: Path | None = None) -> KernelHandle:
    """A handle on a running kernel, attached by its connection file (nbmcp never shuts it down); what runs
    through it is recorded in the notebook ``record_to`` when given."""
    session = await KernelSession.attach(connection_file)
    if record_to is None:
        return KernelHandle(session, None)
    try:
        recorder = await anyio.to_thread.run_sync(_recorder, record_to, session, None)
    except BaseException:
        await session.shutdown()
        raise
    return KernelHandle(session, recorder)


def _recorder(path: Path, session: KernelSession, display_name: str | None) -> SessionRecorder:
    from .recorder import SessionRecorder  # nbformat: slow to import, needed only once recording starts

    return SessionRecorder(
        path, kernel_name=session.kernel_name, language_info=session.language_info, kernel_display_name=display_name
    )


class KernelProvider:
    """Starts, attaches to and hands out kernels; see the module docstring."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.per_session = options.transport == "http" and not options.shared and not options.attaching
        self._shared: asyncio.Task[KernelHandle] | None = None
        self._handles: list[KernelHandle] = []
        self._closed = False

    async def _create(self, suffix: str | None = None, launched: KernelSession | None = None) -> KernelHandle:
        session = launched or await self._open_session()
        if launched is not None:
            await session.connect()
        recorder = None
        if self.options.record and not self.options.read_only:
            try:
                recorder = await anyio.to_thread.run_sync(
                    _recorder, self._notebook_path(suffix), session, self._display_name(session)
                )
            except Exception as exc:
                await session.shutdown()
                raise KernelSessionError(f"cannot record the session notebook: {exc}") from exc
        handle = KernelHandle(session, recorder)
        if self._closed:
            await handle.close()
            raise KernelSessionError("the server is shutting down")
        self._handles.append(handle)
        return handle

    async def _open_session(self) -> KernelSession:
        o = self.options
        existing = o.existing if isinstance(o.existing, str) else None
        if o.server_url:
            return await KernelSession.remote(
                o.server_url,
                o.server_token,
                kernel_name=o.kernel_name,
                kernel_id=existing,
                newest=o.existing is True,
                kernel_env=o.kernel_env,
            )
        if o.attaching:
            return await KernelSession.attach(existing)
        return await KernelSession.start(o.kernel_name, cwd=o.root)

    def _notebook_path(self, suffix: str | None) -> Path:
        path = self.options.notebook
        if path is None:
            path = self.options.root / datetime.now().strftime("nbmcp-session-%Y%m%d-%H%M%S.ipynb")
        path = Path(path)
        if suffix:
            path = path.with_name(f"{path.stem}-{suffix}{path.suffix}")
        return path

    @staticmethod
    def _display_name(session: KernelSession) -> str:
        spec_name = session.kernel_name
        return str((session.kernel_info.get("implementation") or spec_name) if session.kernel_info else spec_name)

    def start_shared(self, launched: KernelSession | None = None) -> asyncio.Task[KernelHandle]:
        """Start (or attach to) the shared kernel in the background; tools await it. ``launched``: a
        kernel process already started with :meth:`KernelSession.launch`."""
        if self._shared is None or (self._shared.done() and self._shared.exception() is not None):
            self._shared = asyncio.ensure_future(self._create(launched=launched))
        return self._shared

    async def get(self, ctx: Context | None) -> KernelHandle:
        """The kernel the request in ``ctx`` acts on."""
        if self._closed:
            raise ToolError("the server is shutting down")
        connection = _connection_of(ctx) if self.per_session else None
        if connection is None or getattr(connection, "session_id", None) is None:
            return await self._await(self.start_shared())
        state = connection.state
        task = state.get("nbmcp.serve")
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._create(suffix=str(connection.session_id)[:8]))
            state["nbmcp.serve"] = task
            connection.exit_stack.push_async_callback(self._end_session, task)
        return await self._await(task)

    async def _end_session(self, task: asyncio.Task[KernelHandle]) -> None:
        """The client session ended: shut its kernel down."""
        try:
            handle = await task
        except BaseException:
            return
        with contextlib.suppress(ValueError):
            self._handles.remove(handle)
        await handle.close()

    @staticmethod
    async def _await(task: asyncio.Task[KernelHandle]) -> KernelHandle:
        try:
            return await asyncio.shield(task)
        except KernelSessionError as exc:
            raise ToolError(str(exc)) from exc

    async def close_all(self) -> None:
        """Shut down every kernel nbmcp started (attached kernels are only disconnected)."""
        self._closed = True
        if self._shared is not None and not self._shared.done():
            with contextlib.suppress(BaseException):
                await self._shared
        handles, self._handles = self._handles, []
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)


def _connection_of(ctx: Context | None) -> Any:
    """The SDK connection of a request (per-connection ``state`` and teardown ``exit_stack``)."""
    if ctx is None:
        return None
    try:
        session = ctx.request_context.session
    except (ValueError, AttributeError):
        return None
    return connection_of(session)
