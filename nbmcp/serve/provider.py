"""Which kernel a request acts on: ``nbmcp serve``'s options, kernel handles and the kernel provider.

One shared kernel (stdio, ``--shared``, ``--existing``), or over HTTP a kernel per client, in both protocol eras:

- a named kernel per URL ``/k/<name>/mcp`` (:class:`KernelPaths`): every request to that URL, with or without
  a session, reaches the kernel of that name, started on its first call and shut down after ``idle_timeout``
  seconds without a call (a sessionless client never says goodbye). ``nbmcp serve`` prints such a URL first,
  with a fresh random name: it works with every client's defaults, whatever protocol era it speaks;
- on ``/mcp``, a kernel per handshake-era session, shut down when the session ends (the SDK unwinds the
  connection's exit stack on DELETE, its idle timeout -- ``idle_timeout`` too -- or a crash). A sessionless
  (2026-07-28 era) request there carries nothing that tells clients apart, so it is refused with a message
  naming the ``/k/<name>/mcp`` URL and ``--shared``, rather than silently sharing one client's kernel with all.

The name is in the URL, not in a token or a header, because a URL is the one thing every client lets a user set
(headers need per-client syntax; a token is a secret, shared by all clients of the server).

At most ``max_kernels`` such kernels run at once. Kernels nbmcp started are shut down when the server exits;
attached kernels never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from .. import content
from ..cancellation import wait_ended
from ..exceptions import KernelSessionError
from ..sdk import connection_of
from ..tasks import TASK_GRACE
from ..transport import TRANSPORTS, TransportName
from .kernel.bounds import DEFAULT_OUTPUT_LIMIT, MIN_OUTPUT_LIMIT
from .kernel.execution import ExecutionOutcome, OutputCallback, OutputsCallback
from .kernel.session import KernelSession

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from .notebook.recorder import SessionRecorder

__all__ = [
    "NAMED_PATH",
    "ClientDisconnected",
    "ExecutionRun",
    "KernelHandle",
    "KernelPaths",
    "KernelProvider",
    "KernelSource",
    "ServeOptions",
    "attach_kernel",
    "cancel_on_disconnect",
    "client_of",
    "named_url",
]

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
    record_output_limit: int = DEFAULT_OUTPUT_LIMIT  # characters kept of each output (head and tail): .bounds
    image_max_px: int = content.DEFAULT_IMAGE_MAX_PX
    read_only: bool = False
    query_timeout: float = 30.0
    query_max_spill_bytes: int = 1024**3  # disk one `query` may spill to; 0: none
    task_grace: float = TASK_GRACE  # seconds before a call of a tasks-capable client becomes a task
    shared: bool = False
    transport: TransportName = "stdio"  # a name in nbmcp.transport.TRANSPORTS
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    max_kernels: int = 10  # HTTP: kernels for clients at once (named + per session)
    idle_timeout: float = 600.0  # HTTP: seconds without a call before a client's kernel is shut down

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not self.task_grace >= 0:
            raise ValueError(f"--task-grace must be a number of seconds >= 0, not {self.task_grace}")
        if self.record_output_limit < MIN_OUTPUT_LIMIT:
            raise ValueError(f"--record-output-limit must be at least {MIN_OUTPUT_LIMIT:,} characters")

    @property
    def attaching(self) -> bool:
        return self.existing not in (None, False)


class KernelHandle:
    """A kernel and the notebook its executions are recorded in."""

    def __init__(self, session: KernelSession, recorder: SessionRecorder | None) -> None:
        self.session = session
        self.recorder = recorder

    async def begin(self, code: str) -> ExecutionRun:
        """Where one execution of ``code`` goes while it runs and when it ends: the session notebook here;
        the Jupyter extension's handles show it live in the open notebook (:mod:`nbmcp.jupyter.live`)."""
        return ExecutionRun(self, code)

    def record(self, code: str, outcome: ExecutionOutcome) -> None:
        if self.recorder is None:
            return
        try:
            status = outcome.status if outcome.status != "ok" else None
            self.recorder.record(
                code, outcome.outputs, outcome.execution_count, status=status, cut_chars=outcome.cut_chars
            )
        except Exception:  # recording must never fail an execution
            log.warning("could not record the execution in %s", self.recorder.path, exc_info=True)

    async def close(self) -> None:
        try:
            await self.session.shutdown()
        finally:
            if self.recorder is not None:
                with contextlib.suppress(Exception):
                    await anyio.to_thread.run_sync(self.recorder.close)


class ExecutionRun:
    """One execution while it runs: ``on_output(name, text)`` sees its stream text as it comes (None: not
    watched), ``on_outputs(outputs)`` the whole output list each time any output arrives or changes (a live
    cell shows displays as they come), :meth:`finish` takes its outcome (recorded in the session notebook),
    :meth:`fail` an error that ended it without one."""

    on_output: OutputCallback | None = None
    on_outputs: OutputsCallback | None = None

    def __init__(self, handle: KernelHandle, code: str) -> None:
        self.handle = handle
        self.code = code

    async def finish(self, outcome: ExecutionOutcome) -> None:
        self.handle.record(self.code, outcome)

    async def fail(self, error: BaseException) -> None:
        """The execution ended without an outcome (the kernel died, the session closed): nothing to record."""


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
        with anyio.CancelScope(shield=True):  # cancelled too: the channels must still close
            await session.shutdown()
        raise
    return KernelHandle(session, recorder)


def _recorder(path: Path, session: KernelSession, display_name: str | None) -> SessionRecorder:
    from .notebook.recorder import SessionRecorder  # nbformat: slow to import, needed only once recording starts

    return SessionRecorder(
        path,
        output_limit=session.output_limit,
        kernel_name=session.kernel_name,
        language_info=session.language_info,
        kernel_display_name=display_name,
    )


NAMED_PATH = "/k/{name}/mcp"  # that client's own kernel, in both protocol eras: what nbmcp serve prints first
_NAME_KEY = "nbmcp.kernel_name"  # where KernelPaths leaves the name in the ASGI scope
_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# /k/NAME/mcp; /mcp/k/NAME (the first form), and /mcp/k/NAME/mcp: clients such as fast-agent append "/mcp" to
# a URL that does not end in it
_NAMED = re.compile(r"/(?:k/(?P<name>[^/]*)/mcp|mcp/k/(?P<old>[^/]*)(?:/mcp)?)/?")


def named_url(base: str, name: str) -> str:
    """The URL of the kernel ``name`` on the server at ``base`` (``http://HOST:PORT``)."""
    return base.rstrip("/") + NAMED_PATH.format(name=name)


class KernelPaths:
    """ASGI: ``/k/<name>/mcp`` (also ``/mcp/k/<name>`` and ``/mcp/k/<name>/mcp``) is the MCP endpoint ``/mcp``
    acting on the kernel ``<name>``.

    The name ends the URL in ``/mcp`` so that clients which add ``/mcp`` to any other URL (fast-agent) leave
    it alone; the older ``/mcp/k/<name>`` stays, with or without that addition."""

    def __init__(self, app: Any, endpoint: str = "/mcp") -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(("/k/", "/mcp/k/")):
            found = _NAMED.fullmatch(path)
            name = (found["name"] if found["name"] is not None else found["old"]) if found else None
            if name is None or not _VALID_NAME.fullmatch(name):
                where = f"kernel name {name!r} in the URL" if name is not None else f"no MCP endpoint at {path!r}"
                body = (
                    f"{where}: a client's own kernel is at /k/NAME/mcp, with a NAME of 1-64 letters, digits, '.', "
                    "'_' or '-' (e.g. /k/my-client/mcp)"
                ).encode()
                headers = [(b"content-type", b"text/plain; charset=utf-8")]
                await send({"type": "http.response.start", "status": 404, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, "path": self.endpoint, "raw_path": self.endpoint.encode(), _NAME_KEY: name}
        await self.app(scope, receive, send)


class KernelProvider:
    """Starts, attaches to and hands out kernels; see the module docstring."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.per_session = not TRANSPORTS[options.transport].one_client and not options.shared and not options.attaching
        self._shared: asyncio.Task[KernelHandle] | None = None
        self._handles: list[KernelHandle] = []
        self._closed = False
        self._named: dict[str, asyncio.Task[KernelHandle]] = {}
        self._last_used: dict[str, float] = {}
        self._client_kernels: set[asyncio.Task[KernelHandle]] = set()  # named and per session: the cap counts them
        self._reaper: asyncio.Task[None] | None = None

    async def _create(self, suffix: str | None = None, launched: KernelSession | None = None) -> KernelHandle:
        session = launched or await self._open_session()
        session.output_limit = self.options.record_output_limit
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
            self._shared.add_done_callback(_say_why_it_failed)
        return self._shared

    async def get(self, ctx: Context | None) -> KernelHandle:
        """The kernel the request in ``ctx`` acts on."""
        if self._closed:
            raise ToolError("the server is shutting down")
        if not self.per_session:
            return await self._await(self.start_shared())
        request = _request_of(ctx)
        name = request.scope.get(_NAME_KEY) if request is not None else None
        if name is not None:
            return await self._await(self._named_kernel(name))
        connection = _connection_of(ctx)
        if connection is None or getattr(connection, "session_id", None) is None:
            base = str(request.base_url).rstrip("/") if request is not None else "http://HOST:PORT"
            raise ToolError(
                "nbmcp serve gives each client its own kernel, but this request has no session (the stateless "
                "2026-07-28 protocol era), so nothing tells its client from others: connect to "
                f"{named_url(base, 'NAME')} instead (a NAME of your own; the same NAME reaches the same kernel), "
                "or start nbmcp serve with --shared to let all clients share one kernel"
            )
        state = connection.state
        task = state.get("nbmcp.serve")
        if task is None or (task.done() and task.exception() is not None):
            task = self._new_client_kernel(suffix=str(connection.session_id)[:8])
            state["nbmcp.serve"] = task
            connection.exit_stack.push_async_callback(self._end_session, task)
        return await self._await(task)

    def _new_client_kernel(self, suffix: str) -> asyncio.Task[KernelHandle]:
        """Start a kernel for one client, within ``max_kernels``."""
        live = {t for t in self._client_kernels if not (t.done() and t.exception() is not None)}
        self._client_kernels = live
        cap = self.options.max_kernels
        if len(live) >= cap:
            raise ToolError(
                f"--max-kernels {cap} reached: {len(live)} kernels already run for other clients. End a client "
                f"session (or let an unused kernel be shut down after --idle-timeout {self.options.idle_timeout:g} "
                "s), or restart nbmcp serve with a larger --max-kernels"
            )
        task = asyncio.ensure_future(self._create(suffix=suffix))
        live.add(task)
        return task

    def _named_kernel(self, name: str) -> asyncio.Task[KernelHandle]:
        self._last_used[name] = time.monotonic()
        task = self._named.get(name)
        if task is None or (task.done() and task.exception() is not None):
            task = self._named[name] = self._new_client_kernel(suffix=name)
            if self._reaper is None:
                self._reaper = asyncio.ensure_future(self._reap_idle())
        return task

    async def _reap_idle(self) -> None:
        """Shut down named kernels unused for ``idle_timeout`` seconds (sessionless clients never end)."""
        idle = self.options.idle_timeout
        while not self._closed:
            await asyncio.sleep(min(idle / 4, 30.0))
            now = time.monotonic()
            for name, task in list(self._named.items()):
                if not task.done() or task.exception() is not None:
                    continue
                handle = task.result()
                if handle.session.busy or now - self._last_used.get(name, now) < idle:
                    continue
                del self._named[name]
                self._last_used.pop(name, None)
                await self._end_session(task)

    async def _end_session(self, task: asyncio.Task[KernelHandle]) -> None:
        """The client session ended: shut its kernel down (shielded: cut short, the kernel would run on until the
        server stops)."""
        self._client_kernels.discard(task)
        with anyio.CancelScope(shield=True):
            await wait_ended(task)  # a kernel still starting: let it finish, then shut it down
            if task.cancelled() or task.exception() is not None:
                return
            handle = task.result()
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
        if self._reaper is not None:
            self._reaper.cancel()
        handles, self._handles = self._handles, []
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)
        # A kernel still starting shuts itself down once it is up (``_create`` sees ``_closed``): wait for that
        # last. Not shielded here: the callers shield this or bound it (a signal's shutdown, 15 s), and a bound
        # must end it, not be swallowed.
        await wait_ended(*self._client_kernels, *self._named.values(), *([self._shared] if self._shared else []))


def _say_why_it_failed(task: asyncio.Task[KernelHandle]) -> None:
    """One line on stderr (the client's log) when the kernel did not come up; the tools answer with it too.
    Retrieving the error here also spares the user asyncio's "Task exception was never retrieved" traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("the kernel is not available: %s", task.exception())


class ClientDisconnected(ToolError):
    """The HTTP client of a call went away while it ran; the call was cancelled (a cell: interrupted)."""


@contextlib.asynccontextmanager
async def cancel_on_disconnect(ctx: Context | None) -> AsyncIterator[None]:
    """Cancel the body when the client that sent the request in ``ctx`` disconnects, then raise
    :class:`ClientDisconnected`.

    A handshake-era request outlives its HTTP stream (the SDK serves it on the session's loop and would
    drop the reply): without this, a client that vanished mid-``execute`` kept its cell running and the
    next call waited for it. Sessionless requests need nothing: the SDK cancels them when their stream
    closes. Over stdio there is no request to watch.
    """
    request = _request_of(ctx)
    connection = _connection_of(ctx)
    if request is None or connection is None or getattr(connection, "session_id", None) is None:
        yield
        return
    with anyio.CancelScope() as body:

        async def watch() -> None:
            # the request body is read: the next ASGI message of this request is its disconnect (a server
            # that answers anything else cannot tell us, and is not asked again)
            if (await request.receive())["type"] == "http.disconnect":
                body.cancel()

        async with anyio.create_task_group() as watcher:
            watcher.start_soon(watch)
            try:
                yield
            finally:
                watcher.cancel_scope.cancel()
    if body.cancelled_caught:
        raise ClientDisconnected("the client disconnected during the call; it was cancelled")


def client_of(request_context: Any) -> Any:
    """Which client sent a request (the SDK's request context, as middleware sees it), for what a client owns
    (its background tasks): the kernel name of a ``/mcp/k/NAME`` URL, else the handshake-era session, else None
    (stdio's one client; sessionless clients of one shared kernel, which nothing tells apart)."""
    request = getattr(request_context, "request", None)
    scope = getattr(request, "scope", None)
    name = scope.get(_NAME_KEY) if isinstance(scope, dict) else None
    if name is not None:
        return ("kernel", name)
    session_id = getattr(connection_of(getattr(request_context, "session", None)), "session_id", None)
    return ("session", session_id) if session_id is not None else None


def _request_of(ctx: Context | None) -> Any:
    """The HTTP request (Starlette) that carried the call in ``ctx``, or None (stdio)."""
    if ctx is None:
        return None
    try:
        request = ctx.request_context.request
    except (ValueError, AttributeError):
        return None
    return request if hasattr(request, "scope") else None


def _connection_of(ctx: Context | None) -> Any:
    """The SDK connection of a request (per-connection ``state`` and teardown ``exit_stack``)."""
    if ctx is None:
        return None
    try:
        session = ctx.request_context.session
    except (ValueError, AttributeError):
        return None
    return connection_of(session)
