"""Background tasks: a long tool call that returns a task id at once and is polled, fetched or cancelled later.

The most requested thing for notebook assistants is running a long cell without the client's request timing
out. ``execute(..., background=True)`` (``nbmcp serve``, the Jupyter Server extension, the in-kernel server)
starts the work here and answers with a task id; ``task_status(id)`` shows progress and the tail of the output
so far, ``task_result(id)`` the finished result (exactly what the plain call would have returned), and
``task_cancel(id)`` cancels the work, which for a cell interrupts the kernel. This plain pair works in every
protocol era and with every client.

Tasks belong to the client that started them: :func:`owner_middleware` names the client of each request (a
kernel URL, a session), and every other client is told there is no such task. Per client, finished tasks stay
readable for ``ttl`` seconds, at most ``keep`` of them (oldest dropped first); running ones are never dropped, and
at most ``max_running`` run at once. Task ids are random and unguessable as well.

The registry is plain asyncio: work runs as a task on the server's event loop, so it outlives the request that
started it. It knows nothing of kernels; the wings give it the work and the cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mcp.types import CallToolResult, TextContent

__all__ = ["BackgroundTask", "TaskRegistry", "owner_middleware", "shown_id", "status_result"]

PARTIAL_CHARS = 4_000  # the tail of the output kept for task_status (the whole output comes with the result)
MAX_WAIT = 60.0  # the longest task_result may wait for a result in one call
SHOWN_ID_CHARS = 64  # a task id echoed in a message is cut to this (ids nbmcp makes are 16 characters)

# Who is asking: set for each request by owner_middleware; None where one client is all there is (stdio)
_owner: contextvars.ContextVar[Hashable] = contextvars.ContextVar("nbmcp_task_owner", default=None)


def owner_middleware(identify: Callable[[Any], Hashable]) -> Callable[[Any, Any], Awaitable[Any]]:
    """An ``MCPServer`` middleware: ``identify(ctx)`` (the SDK's request context) names the client of each
    request, and the tasks it starts are its own (the tools and the tasks extension read it)."""

    async def middleware(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        token = _owner.set(identify(ctx))
        try:
            return await call_next(ctx)
        finally:
            _owner.reset(token)

    return middleware


def shown_id(task_id: Any) -> str:
    """``task_id`` as a message may echo it: quoted, and cut when it is longer than any id nbmcp makes."""
    text = task_id if isinstance(task_id, str) else repr(task_id)
    return repr(text) if len(text) <= SHOWN_ID_CHARS else repr(text[:SHOWN_ID_CHARS]) + "…"


@dataclass
class BackgroundTask:
    """One background call, as ``task_status`` shows it."""

    id: str
    tool: str
    summary: str
    owner: Hashable = None  # the client that started it (owner_middleware): nobody else can see it
    created: float = field(default_factory=time.time)
    finished: float | None = None
    status: str = "working"  # working | completed | failed | cancelled
    chunks: int = 0  # output chunks seen so far: progress for work of unknown length
    partial: str = ""
    result: CallToolResult | None = None
    peek: Callable[[], str] | None = field(default=None, repr=False)  # output so far, for work that is polled
    runner: asyncio.Task[Any] | None = field(default=None, repr=False)  # the asyncio task doing the work

    def on_output(self, name: str, text: str) -> None:
        """Keep the tail of the output (stderr marked) for ``task_status``."""
        self.chunks += 1
        self.partial = (self.partial + (f"[{name}] " if name != "stdout" else "") + text)[-PARTIAL_CHARS:]

    @property
    def done(self) -> bool:
        return self.status != "working"

    def output_so_far(self) -> str:
        if self.partial or self.peek is None or self.done:
            return self.partial
        with contextlib.suppress(Exception):
            return self.peek()[-PARTIAL_CHARS:]
        return ""

    def as_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "task_id": self.id,
            "tool": self.tool,
            "summary": self.summary,
            "status": self.status,
            "elapsed_s": round(end - self.created, 3),
            "output_chunks": self.chunks,
            "partial_output": self.output_so_far(),
            "result_ready": self.result is not None,
        }


class TaskRegistry:
    """The background tasks of one server, each visible only to the client that started it.

    ``keep`` and ``max_running`` are per client; ``keep * 10`` finished tasks at most are kept in all.
    """

    def __init__(self, *, keep: int = 50, ttl: float = 3600.0, max_running: int = 8) -> None:
        self.keep = keep
        self.ttl = ttl
        self.max_running = max_running
        self._tasks: OrderedDict[str, BackgroundTask] = OrderedDict()

    def start(
        self, tool: str, summary: str, work: Callable[[BackgroundTask], Awaitable[CallToolResult]]
    ) -> BackgroundTask:
        """Run ``work(task)`` in the background on the running loop; ``task.on_output`` takes its output.
        ``RuntimeError`` (and nothing runs) if this client has ``max_running`` tasks running already."""
        self.prune()
        owner = _owner.get()
        running = sum(1 for t in self._tasks.values() if not t.done and t.owner == owner)
        if running >= self.max_running:
            raise RuntimeError(
                f"{running} of your background tasks are running already (at most {self.max_running} per client): "
                "wait for one with task_result, or cancel one with task_cancel"
            )
        task = BackgroundTask(id=secrets.token_urlsafe(12), tool=tool, summary=summary, owner=owner)
        self._tasks[task.id] = task
        task.runner = asyncio.get_running_loop().create_task(self._run(task, work), name=f"nbmcp-task-{task.id}")
        return task

    async def _run(self, task: BackgroundTask, work: Callable[[BackgroundTask], Awaitable[CallToolResult]]) -> None:
        try:
            result = await work(task)
        except asyncio.CancelledError:
            task.status = "cancelled"
            task.result = _text_result(f"task {task.id} was cancelled", is_error=True, data=task.as_dict())
        except Exception as exc:  # the work's own failure is the task's result, not a crash of the server
            task.status = "failed"
            task.result = _text_result(f"task {task.id} failed: {type(exc).__name__}: {exc}", is_error=True)
        else:
            task.status = "failed" if result.is_error else "completed"
            task.result = result
        finally:
            task.finished = time.time()

    def get(self, task_id: str) -> BackgroundTask:
        """The task ``task_id`` of the client asking; ``LookupError`` saying what to do if it is unknown, expired
        or another client's (which is not told apart from unknown)."""
        self.prune()
        task = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or task.owner != _owner.get():
            raise LookupError(
                f"task_id: no task {shown_id(task_id)} (unknown, or finished more than {self.ttl:g} s ago and "
                "dropped); start one with execute(..., background=True)"
            )
        return task

    async def wait(self, task_id: str, seconds: float) -> BackgroundTask:
        """The task, after waiting up to ``seconds`` (at most :data:`MAX_WAIT`) for it to finish."""
        task = self.get(task_id)
        if not task.done and seconds > 0 and task.runner is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task.runner), min(seconds, MAX_WAIT))
        return task

    async def cancel(self, task_id: str, timeout: float = 30.0) -> BackgroundTask:
        """Cancel the task's work (a cell: the kernel is interrupted) and wait, bounded, until it has stopped."""
        task = self.get(task_id)
        if not task.done and task.runner is not None:
            task.runner.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task.runner), timeout)
        return task

    def discard(self, task_id: str) -> None:
        """Forget a finished task (its result went to the client another way)."""
        task = self._tasks.get(task_id)
        if task is not None and task.done:
            del self._tasks[task_id]

    def tasks(self) -> list[BackgroundTask]:
        """The tasks of the client asking."""
        self.prune()
        owner = _owner.get()
        return [t for t in self._tasks.values() if t.owner == owner]

    def prune(self) -> None:
        """Drop finished tasks older than ``ttl``, then each client's oldest finished ones beyond ``keep``
        (so no client pushes out another's results), then the oldest beyond ``keep * 10`` in all."""
        now = time.time()
        finished = [t for t in self._tasks.values() if t.done]
        for task in finished:
            if task.finished is not None and now - task.finished > self.ttl:
                del self._tasks[task.id]
        by_owner: dict[Hashable, list[BackgroundTask]] = {}
        for task in self._tasks.values():
            if task.done:
                by_owner.setdefault(task.owner, []).append(task)
        for tasks in by_owner.values():
            for task in tasks[: max(0, len(tasks) - self.keep)]:
                del self._tasks[task.id]
        finished = [t for t in self._tasks.values() if t.done]
        for task in finished[: max(0, len(finished) - self.keep * 10)]:
            del self._tasks[task.id]

    async def close(self) -> None:
        """Cancel everything still running (the server is going away)."""
        running = [t.runner for t in self._tasks.values() if t.runner is not None and not t.runner.done()]
        for work in running:
            work.cancel()
        if running:
            await asyncio.wait(running, timeout=10)


def status_result(task: BackgroundTask, *, not_finished_error: bool = False) -> CallToolResult:
    """``task_status``'s answer: a status line, the output's tail, what to call next (an error result saying the
    task has not finished, for ``task_result`` on a running task)."""
    info = task.as_dict()
    lines = [f"task {task.id} ({task.summary}): {task.status}, {info['elapsed_s']:.1f} s, {task.chunks} output chunks"]
    if not_finished_error:
        lines.insert(0, f"task {task.id} has not finished yet, so it has no result:")
    if info["partial_output"]:
        lines += ["output so far (tail):", info["partial_output"].rstrip("\n")]
    lines.append(
        "fetch the result with task_result" if task.done else "still running: poll task_status, or task_cancel it"
    )
    return _text_result("\n".join(lines), data=info, is_error=not_finished_error)


def _text_result(text: str, *, is_error: bool = False, data: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data, is_error=is_error)


# ---------------------------------------------------------------------------------------------------------------
# The 2026-era tasks extension: a client that advertises it gets an `execute` that outlasts TASK_GRACE (or asked
# for background=true) as a task on the wire, resolved by the client's own extension (poll tasks/get, then
# tasks/result), so no request stays open while a long cell runs; a call that finishes within the grace answers
# inline. (The MCP Inspector 2.12 in its modern era declares the extension on every request but cannot take a
# task result: the grace is what makes `execute` work there, for calls shorter than it.)
# The SDK has the hooks (server `Extension`: methods and a tools/call interceptor; client `ResultClaim`) but no
# tasks extension of its own: this is the smallest one over them. The wire shapes follow the 2025-11-25 tasks
# utility (Task fields, tasks/get|result|cancel), carried as an extension result (`resultType: "task"`).
#
# A task result exists only in the 2026-07-28 era: handshake-era results are sieved to their era's schema, where a
# tools/call result must have `content` (the 2025-11-25 era's own task utility is a different protocol, which
# nbmcp does not declare). Clients such as the MCP Inspector 2.12 declare the extension in a 2025-11-25
# initialize: they get the plain call, with progress.
# ---------------------------------------------------------------------------------------------------------------

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
POLL_INTERVAL_MS = 200
# How long a call of a task-capable client may run before it is answered with a task instead of its result. Most
# interactive cells finish within it (and save the task's polling round trips); a longer one hands the client a
# task it can poll and cancel after 5 s, far inside the request timeouts clients ship with (60 s in both SDKs and
# the MCP Inspector), so no request stays open long enough to hit a proxy's or client's idle limit.
TASK_GRACE = 5.0


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


def task_wire(task: BackgroundTask, ttl: float) -> dict[str, Any]:
    """A task as the protocol's ``Task`` object."""
    return {
        "taskId": task.id,
        "status": task.status,
        "statusMessage": f"{task.summary}: {task.chunks} output chunks so far" if not task.done else task.summary,
        "createdAt": _iso(task.created),
        "lastUpdatedAt": _iso(task.finished or time.time()),
        "ttl": int(ttl * 1000),
        "pollInterval": POLL_INTERVAL_MS,
    }


def client_supports_tasks(ctx: Any) -> bool:
    """Whether this request may be answered with a task: the 2026-07-28 era (the only one whose results can be a
    task) and a client that declared the tasks extension in this request's capabilities. (The server's side of
    the negotiation is :func:`tasks_extension` itself: it is what declares the extension.)"""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    session = getattr(ctx, "session", None)
    version = getattr(ctx, "protocol_version", None) or getattr(session, "protocol_version", None)
    if version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = getattr(session, "client_capabilities", None)
    extensions = getattr(capabilities, "extensions", None) or {}
    return TASKS_EXTENSION in extensions


async def _within_grace(task: BackgroundTask, grace: float) -> CallToolResult | None:
    """The task's result if it finishes within ``grace`` seconds, else None (it keeps running). A cancelled
    request cancels the work too: the client asked for a plain call and will never poll for it."""
    if task.runner is None or grace <= 0:
        return None
    try:
        await asyncio.wait({task.runner}, timeout=grace)  # neither raises on timeout nor cancels the runner
    except asyncio.CancelledError:
        task.runner.cancel()
        raise
    return task.result if task.done else None


def tasks_extension(registry: TaskRegistry, tools: tuple[str, ...] = ("execute",), *, grace: float = TASK_GRACE) -> Any:
    """The server side: ``MCPServer(extensions=[tasks_extension(registry)])``. ``tools`` must take
    ``background=True`` and answer with ``structured_content["task_id"]`` (as ``execute`` does).

    A call of a client that declared the extension still answers inline when it finishes within ``grace``
    seconds (:data:`TASK_GRACE` unless configured: ``c.NbMCP.task_grace``, ``nbmcp serve --task-grace``); only a
    longer one, or one that asked for ``background=true`` itself, is answered with a task. Fast calls save the
    polling round trips, and clients that declare the extension without taking task results (the MCP Inspector
    2.12 in its modern era) get their answer."""
    from mcp.server.extension import Extension, MethodBinding
    from mcp_types import RequestParams
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS
    from pydantic import Field

    class TaskIdParams(RequestParams):
        task_id: str = Field(alias="taskId")

    class TasksExtension(Extension):
        identifier = TASKS_EXTENSION

        def settings(self) -> dict[str, Any]:
            return {"tools": list(tools)}

        def methods(self) -> list[Any]:
            # the era whose results can be tasks; in the handshake era these methods are not found, as the
            # 2025-11-25 `tasks` capability nbmcp does not declare says
            era = frozenset(MODERN_PROTOCOL_VERSIONS)
            return [
                MethodBinding("tasks/get", TaskIdParams, self.get, era),
                MethodBinding("tasks/result", TaskIdParams, self.result, era),
                MethodBinding("tasks/cancel", TaskIdParams, self.cancel, era),
            ]

        async def intercept_tool_call(self, params: Any, ctx: Any, call_next: Any) -> Any:
            # Decided before anything runs: a call the client cannot receive as a task runs to its plain result.
            arguments = params.arguments if isinstance(params.arguments, dict) else None
            if params.name not in tools or arguments is None or not client_supports_tasks(ctx):
                return await call_next(ctx)
            asked_for_background = arguments.get("background") is True
            arguments["background"] = True  # the handler is invoked with these very params
            result = await call_next(ctx)
            started = getattr(result, "structured_content", None)
            task_id = started.get("task_id") if isinstance(started, dict) else None
            if task_id is None or getattr(result, "is_error", False):
                return result  # refused (approval, too many tasks): the plain error
            task = registry.get(task_id)
            if not asked_for_background:
                finished = await _within_grace(task, grace)
                if finished is not None:
                    registry.discard(task.id)  # the client never saw this task: nothing to poll, nothing to list
                    return finished
            return {"resultType": "task", "task": task_wire(task, registry.ttl)}

        def _task(self, task_id: str) -> BackgroundTask:
            from mcp.shared.exceptions import MCPError
            from mcp_types import INVALID_PARAMS

            try:
                return registry.get(task_id)
            except LookupError as exc:
                raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

        async def get(self, ctx: Any, params: Any) -> Any:
            return task_wire(self._task(params.task_id), registry.ttl)

        async def result(self, ctx: Any, params: Any) -> Any:
            task = self._task(params.task_id)
            task = await registry.wait(task.id, MAX_WAIT)
            if task.result is None:
                return status_result(task, not_finished_error=True)
            return task.result

        async def cancel(self, ctx: Any, params: Any) -> Any:
            return task_wire(await registry.cancel(self._task(params.task_id).id), registry.ttl)

    return TasksExtension()


def tasks_client_extension() -> Any:
    """The client side, for ``mcp.Client(extensions=[...])``: a task result is polled to its end and its result
    returned, so ``call_tool`` answers as if the call had been plain (2026 era; nbmcp's bridge can use it too)."""
    from typing import Literal

    from mcp.client.extension import ClientExtension, ResultClaim
    from mcp_types import CallToolResult as WireCallToolResult
    from mcp_types import Request, RequestParams, Result
    from pydantic import Field

    class TaskIdParams(RequestParams):
        task_id: str = Field(alias="taskId")

    class TaskRequest(Request[TaskIdParams, str]):
        method: str
        params: TaskIdParams

    class TaskState(Result):
        task_id: str = Field(alias="taskId")
        status: str
        poll_interval: int | None = Field(default=None, alias="pollInterval")

    class TaskCreated(Result):
        result_type: Literal["task"] = Field(alias="resultType")
        task: dict[str, Any]

    async def resolve(created: TaskCreated, ctx: Any) -> Any:
        task_id = created.task["taskId"]
        params = TaskIdParams(taskId=task_id)
        status = created.task["status"]
        while status == "working":
            await asyncio.sleep((created.task.get("pollInterval") or POLL_INTERVAL_MS) / 1000)
            state = await ctx.session.send_request(TaskRequest(method="tasks/get", params=params), TaskState)
            status = state.status
        return await ctx.session.send_request(TaskRequest(method="tasks/result", params=params), WireCallToolResult)

    class TasksClientExtension(ClientExtension):
        identifier = TASKS_EXTENSION

        def claims(self) -> list[Any]:
            return [ResultClaim(result_type="task", model=TaskCreated, resolve=resolve)]

    return TasksClientExtension()
