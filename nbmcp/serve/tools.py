"""The ``nbmcp serve`` MCP server: tools over a Jupyter kernel, per-client kernels, stdio and HTTP.

Tools: ``execute``, ``interrupt``, ``restart``, ``list_variables``, ``inspect_variable``, ``read_rows``,
``notebook_read``, ``notebook_edit``, ``notebook_run``; resource ``nbmcp://outputs/{id}`` (full text of
cut outputs). ``read_only`` serves the inspection tools only.

Which kernel a request acts on (:class:`KernelProvider`): one shared kernel (stdio, ``--shared``,
``--existing``, requests of the sessionless 2026 protocol era), or -- HTTP, handshake-era sessions --
one kernel per client session, started on its first call and shut down when the session ends (the
SDK unwinds the connection's exit stack on DELETE, idle timeout or crash). Kernels nbmcp started are
shut down when the server exits; attached kernels never are.

Inspection runs a small probe module in the kernel (``_nbmcp_probe``, installed on first use, through a
kernel subshell when the kernel has them, so it answers while a cell runs). It uses ``nbmcp.frames`` when
nbmcp is importable in the kernel and falls back to plain pandas otherwise.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from .. import content
from ..sdk import connection_of, quiet_mcp_server
from .outputs import ProgressPump, error_result, kernel_label, outcome_result, text_result
from .session import ExecutionOutcome, KernelDeadError, KernelSession, KernelSessionError

__all__ = ["KernelHandle", "KernelProvider", "ServeOptions", "build_server", "run_http", "run_stdio"]

log = logging.getLogger(__name__)

INSPECT_TIMEOUT = 15.0
_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class ServeOptions:
    """Everything ``nbmcp serve`` can be told (see ``nbmcp serve --help``)."""

    kernel_name: str = "python3"
    root: Path = field(default_factory=Path.cwd)
    existing: str | bool | None = None  # True: newest connection file (or newest remote kernel)
    server_url: str | None = None
    server_token: str | None = None
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


# ------------------------------------------------------------------------------------------- kernels


class KernelHandle:
    """A kernel and the notebook its executions are recorded in."""

    def __init__(self, session: KernelSession, recorder: Any | None) -> None:
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


class KernelProvider:
    """Starts, attaches to and hands out kernels; see the module docstring."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.per_session = options.transport == "http" and not options.shared and not options.attaching
        self._shared: asyncio.Task[KernelHandle] | None = None
        self._handles: list[KernelHandle] = []
        self._closed = False
        self._session_count = 0

    # -- creation
    async def _create(self, suffix: str | None = None, launched: KernelSession | None = None) -> KernelHandle:
        o = self.options
        if launched is not None:
            session = launched
            await session.connect()
        elif o.server_url:
            existing = o.existing if isinstance(o.existing, str) else None
            session = await KernelSession.remote(
                o.server_url,
                o.server_token,
                kernel_name=o.kernel_name,
                kernel_id=existing,
                newest=o.existing is True,
            )
        elif o.attaching:
            session = await KernelSession.attach(o.existing if isinstance(o.existing, str) else None)
        else:
            session = await KernelSession.start(o.kernel_name, cwd=o.root)
        recorder = None
        if o.record and not o.read_only:
            try:
                recorder = await anyio.to_thread.run_sync(self._recorder, session, suffix)
            except Exception as exc:
                await session.shutdown()
                raise KernelSessionError(f"cannot record the session notebook: {exc}") from exc
        handle = KernelHandle(session, recorder)
        if self._closed:
            await handle.close()
            raise KernelSessionError("the server is shutting down")
        self._handles.append(handle)
        return handle

    def _recorder(self, session: KernelSession, suffix: str | None) -> Any:
        from .recorder import SessionRecorder

        path = self.options.notebook
        if path is None:
            path = self.options.root / datetime.now().strftime("nbmcp-session-%Y%m%d-%H%M%S.ipynb")
        path = Path(path)
        if suffix:
            path = path.with_name(f"{path.stem}-{suffix}{path.suffix}")
        spec_name = session.kernel_name
        display = (session.kernel_info.get("implementation") or spec_name) if session.kernel_info else spec_name
        return SessionRecorder(
            path,
            kernel_name=spec_name,
            language_info=session.language_info,
            kernel_display_name=str(display),
        )

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
            self._session_count += 1
            sid = str(connection.session_id)[:8]
            task = asyncio.ensure_future(self._create(suffix=sid))
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


# --------------------------------------------------------------------------------------- inspection

_PROBE_SOURCE = r"""
import difflib as _difflib
import json as _json
import reprlib as _reprlib
import types as _types

try:
    from nbmcp import frames as _frames
except Exception:
    _frames = None

_R = _reprlib.Repr()
_R.maxstring = _R.maxother = 100
_R.maxlist = _R.maxtuple = _R.maxset = _R.maxdict = 10
_R.maxlevel = 2


def _ns():
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except Exception:
        ip = None
    if ip is not None:
        return ip.user_ns, set(ip.user_ns_hidden)
    import __main__

    return vars(__main__), set()


def _mod(obj):
    return type(obj).__module__.split(".")[0]


def _is_frame(obj):
    if _frames is not None:
        try:
            return bool(_frames.is_frame(obj))
        except Exception:
            pass
    return _mod(obj) in ("pandas", "polars", "pyarrow") and hasattr(obj, "columns") and hasattr(obj, "shape")


def _shape(obj):
    try:
        if _is_frame(obj):
            return list(_frames.shape(obj)) if _frames is not None else list(obj.shape)
        s = getattr(obj, "shape", None)
        if isinstance(s, tuple) and all(isinstance(n, int) for n in s):
            return list(s)
    except Exception:
        pass
    return None


def _len(obj):
    if isinstance(obj, (str, bytes, list, tuple, dict, set, frozenset)) or _mod(obj) == "collections":
        return len(obj)
    return None


def _tname(obj):
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else t.__module__.split(".")[0] + "." + t.__qualname__


def _brief(obj):
    if _is_frame(obj):
        s = _shape(obj)
        return "%s %s" % (type(obj).__name__, "x".join(map(str, s)) if s else "")
    try:
        return _R.repr(obj)
    except Exception as e:
        return "<repr failed: %s>" % type(e).__name__


def _describe(name, obj):
    d = {"name": name, "type": _tname(obj)}
    s = _shape(obj)
    if s is not None:
        d["shape"] = s
    else:
        n = _len(obj)
        if n is not None:
            d["len"] = n
    d["repr"] = _brief(obj)
    return d


def list_variables(limit):
    ns, hidden = _ns()
    out, total = [], 0
    for name, obj in list(ns.items()):
        if name.startswith("_") or name in hidden or isinstance(obj, _types.ModuleType):
            continue
        total += 1
        if len(out) < limit:
            try:
                out.append(_describe(name, obj))
            except Exception as e:
                out.append({"name": name, "type": "?", "repr": "<failed: %s>" % e})
    return _json.dumps({"variables": out, "total": total}, default=str)


def _resolve(name):
    ns, hidden = _ns()
    head, *rest = name.split(".")
    if head not in ns:
        names = [n for n in ns if not n.startswith("_") and n not in hidden]
        close = _difflib.get_close_matches(head, names, 5)
        hint = (" Did you mean: %s?" % ", ".join(close)) if close else ""
        raise NameError("name %r is not defined in the kernel.%s" % (head, hint))
    obj = ns[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _records_fallback(obj, offset, limit, columns):
    df = obj
    if columns:
        df = df[list(columns)]
    if _mod(df) == "pandas":
        page = df.iloc[offset : offset + limit]
        return _json.loads(page.to_json(orient="records", date_format="iso", default_handler=str))
    if _mod(df) == "polars":
        return df.slice(offset, limit).to_dicts()
    return df.slice(offset, limit).to_pylist()


def inspect_variable(name, max_chars):
    try:
        obj = _resolve(name)
    except Exception as e:
        return _json.dumps({"error": "%s: %s" % (type(e).__name__, e)})
    d = _describe(name, obj)
    try:
        if _is_frame(obj):
            if _frames is not None:
                d.update(_frames.summary(obj))
                d["frame_kind"] = d.get("kind")
            d["kind"] = "frame"
            if _frames is not None:
                pass
            else:
                d["columns"] = [{"name": str(c), "dtype": str(t)} for c, t in zip(obj.columns, obj.dtypes)]
                d["head"] = _records_fallback(obj, 0, 10, None)
        elif callable(obj) and not isinstance(obj, type):
            import inspect as _inspect

            d["kind"] = "callable"
            try:
                d["signature"] = name + str(_inspect.signature(obj))
            except (TypeError, ValueError):
                pass
            d["doc"] = (_inspect.getdoc(obj) or "")[:max_chars]
        elif isinstance(obj, dict):
            d["kind"] = "mapping"
            d["keys"] = [_R.repr(k) for k in list(obj)[:50]]
            d["repr"] = repr(obj)[:max_chars]
        else:
            d["kind"] = "value"
            text = repr(obj)
            d["repr"] = text[:max_chars] + ("..." if len(text) > max_chars else "")
            dt = getattr(obj, "dtype", None)
            if dt is not None:
                d["dtype"] = str(dt)
            if not isinstance(obj, (int, float, str, bytes, bool, list, tuple, set)):
                d["attributes"] = [a for a in dir(obj) if not a.startswith("_")][:60]
    except Exception as e:
        d["warning"] = "partial description: %s: %s" % (type(e).__name__, e)
    return _json.dumps(d, default=str)


def read_rows(name, offset, limit, columns):
    try:
        obj = _resolve(name)
    except Exception as e:
        return _json.dumps({"error": "%s: %s" % (type(e).__name__, e)})
    try:
        if _is_frame(obj):
            if _frames is not None:
                rows = _frames.page(obj, offset, limit, columns)
                names = [c["name"] for c in _frames.schema(obj)]
                total = _frames.shape(obj)[0]
            else:
                rows = _records_fallback(obj, offset, limit, columns)
                names = [str(c) for c in obj.columns]
                total = obj.shape[0]
            if rows:
                names = list(rows[0].keys())
            elif columns:
                names = list(columns)
        elif isinstance(obj, (list, tuple)):
            total = len(obj)
            items = list(obj[offset : offset + limit])
            if items and all(isinstance(r, dict) for r in items):
                rows = [{str(k): v for k, v in r.items()} for r in items]
                names = list(dict.fromkeys(k for r in rows for k in r))
            else:
                rows = [{"index": offset + i, "value": v} for i, v in enumerate(items)]
                names = ["index", "value"]
            if columns:
                names = list(columns)
                rows = [{c: r.get(c) for c in names} for r in rows]
        else:
            msg = "TypeError: %s is a %s, not a table (DataFrame) or a list" % (name, _tname(obj))
            return _json.dumps({"error": msg})
    except Exception as e:
        return _json.dumps({"error": "%s: %s" % (type(e).__name__, e)})
    return _json.dumps(
        {"columns": names, "rows": rows, "offset": offset, "total_rows": total}, default=str
    )
"""

_PROBE_INSTALL = (
    "(lambda m: (__import__('sys').modules.__setitem__('_nbmcp_probe', m), exec({src!r}, m.__dict__)))"
    "(__import__('types').ModuleType('_nbmcp_probe'));"
)


async def run_probe(session: KernelSession, call: str, *, timeout: float = INSPECT_TIMEOUT) -> dict[str, Any]:
    """Evaluate ``_nbmcp_probe.<call>`` in the kernel (installing the probe if needed); its JSON result."""
    expression = f"__import__('_nbmcp_probe').{call}"
    subshell = session.supports_subshells
    if not subshell and session.busy:
        raise ToolError(
            f"{kernel_label(session.describe())} is busy running a cell and has no subshells "
            "(ipykernel < 7) to inspect it meanwhile; wait for the cell or interrupt() it"
        )
    for attempt in range(2):
        code = _PROBE_INSTALL.format(src=_PROBE_SOURCE) if attempt else ""
        try:
            outcome = await session.execute(
                code,
                silent=True,
                store_history=False,
                user_expressions={"r": expression},
                timeout=timeout,
                subshell=subshell,
                lock=False,
            )
        except KernelDeadError as exc:
            raise ToolError(str(exc)) from exc
        if outcome.status == "timeout":
            raise ToolError(f"the kernel did not answer the inspection within {timeout:g} s (busy?)")
        result = outcome.user_expressions.get("r") or {}
        if result.get("status") == "ok":
            text = result.get("data", {}).get("text/plain", "")
            return json.loads(ast.literal_eval(text))
        if result.get("ename") not in ("ModuleNotFoundError", "ImportError", "AttributeError") or attempt:
            if outcome.status == "error" and outcome.error:
                raise ToolError(f"inspection failed: {outcome.error.get('ename')}: {outcome.error.get('evalue')}")
            raise ToolError(f"inspection failed: {result.get('ename')}: {result.get('evalue')}")
    raise ToolError("inspection failed")  # pragma: no cover


# ------------------------------------------------------------------------------------------- server

_INSTRUCTIONS = """\
A live Jupyter kernel. `execute` runs code in it like a notebook cell: variables persist between calls, \
output streams as progress, long cells are interrupted at the timeout (state kept). Inspect state with \
`list_variables`, `inspect_variable` and `read_rows` (they work while a cell runs). Every execution is \
recorded in a session notebook. Cut outputs are readable in full at nbmcp://outputs/{id}."""

_READ_ONLY_INSTRUCTIONS = """\
A live Jupyter kernel, read-only: inspect its variables with `list_variables`, `inspect_variable` and \
`read_rows`, and read notebooks with `notebook_read`. Code execution is disabled."""


def build_server(options: ServeOptions, provider: KernelProvider | None = None) -> MCPServer:
    """The MCP server for ``options`` (tools, resources); kernels come from ``provider``."""
    from .._version import __version__

    provider = provider or KernelProvider(options)
    store = content.OutputStore()
    server: MCPServer = quiet_mcp_server(
        lambda: MCPServer(
            "nbmcp-serve",
            version=__version__,
            instructions=_READ_ONLY_INSTRUCTIONS if options.read_only else _INSTRUCTIONS,
        )
    )
    server.nbmcp_provider = provider  # type: ignore[attr-defined]
    server.nbmcp_store = store  # type: ignore[attr-defined]
    files = None

    def notebook_files() -> Any:
        nonlocal files
        if files is None:
            from .notebooks import NotebookFiles

            files = NotebookFiles(options.root)
        return files

    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    mutating = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    async def run_code(handle: KernelHandle, code: str, timeout: float, ctx: Context | None) -> ExecutionOutcome:
        session = handle.session
        pump = ProgressPump(ctx.report_progress) if ctx is not None else None
        try:
            outcome = await session.execute(
                code, timeout=timeout, on_output=pump.on_output if pump is not None else None
            )
        except BaseException as exc:
            partial = session.last_outcome
            if (
                isinstance(exc, (asyncio.CancelledError, anyio.get_cancelled_exc_class()))
                and partial is not None
                and partial.status == "cancelled"
            ):
                handle.record(code, partial)
            raise
        finally:
            if pump is not None:
                await pump.close()
        handle.record(code, outcome)
        return outcome

    # -- inspection tools (always served)

    @server.tool(annotations=read_only, structured_output=False)
    async def list_variables(
        ctx: Context,
        limit: Annotated[int, Field(description="At most this many variables (1-1000).")] = 200,
    ) -> CallToolResult:
        """The kernel's user variables: name, type, shape or length, and a short repr."""
        if not 1 <= limit <= 1000:
            raise ToolError(f"limit must be between 1 and 1000, got {limit}")
        handle = await provider.get(ctx)
        data = await run_probe(handle.session, f"list_variables({limit})")
        kernel = handle.session.describe()
        lines = [f"{len(data['variables'])} of {data['total']} variables in {kernel_label(kernel)}"]
        for v in data["variables"]:
            size = "x".join(map(str, v["shape"])) if "shape" in v else (f"len {v['len']}" if "len" in v else "")
            lines.append(f"- {v['name']}: {v['type']}{' ' + size if size else ''} = {v['repr']}")
        data["kernel"] = kernel
        return _budgeted(text_result("\n".join(lines), data), options, store)

    @server.tool(annotations=read_only, structured_output=False)
    async def inspect_variable(
        ctx: Context,
        name: Annotated[str, Field(description="Variable name, or a dotted attribute path like df.columns.")],
    ) -> CallToolResult:
        """Describe one variable: frames get schema, shape, memory and head; callables their signature and
        doc; other values a bounded repr."""
        name = _check_name(name)
        handle = await provider.get(ctx)
        data = await run_probe(handle.session, f"inspect_variable({name!r}, 4000)")
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"inspect_variable: {data['error']}", kernel)
        data["kernel"] = kernel
        return _budgeted(text_result(_describe_text(data), data), options, store)

    @server.tool(annotations=read_only, structured_output=False)
    async def read_rows(
        ctx: Context,
        name: Annotated[str, Field(description="Name of a DataFrame (pandas, polars, pyarrow) or list.")],
        offset: Annotated[int, Field(description="First row (0-based).")] = 0,
        limit: Annotated[int, Field(description="Number of rows (1-1000).")] = 50,
        columns: Annotated[list[str] | None, Field(description="Only these columns (default: all).")] = None,
    ) -> CallToolResult:
        """One page of rows of a table in the kernel, as a markdown table plus JSON records."""
        name = _check_name(name)
        if offset < 0:
            raise ToolError(f"offset must be >= 0, got {offset}")
        if not 1 <= limit <= 1000:
            raise ToolError(f"limit must be between 1 and 1000, got {limit}")
        handle = await provider.get(ctx)
        call = f"read_rows({name!r}, {int(offset)}, {int(limit)}, {list(columns) if columns else None!r})"
        data = await run_probe(handle.session, call)
        kernel = handle.session.describe()
        if "error" in data:
            return error_result(f"read_rows: {data['error']}", kernel)
        from ..frames import markdown_table

        shown = len(data["rows"])
        end = data["offset"] + shown
        head = f"rows {data['offset']}-{max(end - 1, data['offset'])} of {data['total_rows']} in `{name}`"
        if not shown:
            head = f"no rows at offset {data['offset']} ({data['total_rows']} rows in `{name}`)"
        text = head + "\n\n" + markdown_table(data["rows"], data["columns"]) if shown else head
        data["kernel"] = kernel
        return _budgeted(text_result(text, data), options, store)

    @server.tool(annotations=read_only, structured_output=False)
    async def notebook_read(
        path: Annotated[str, Field(description="Notebook path, relative to the server's root directory.")],
    ) -> CallToolResult:
        """Cells of a notebook file (ids, types, sources, short output summaries) and its version token,
        needed by notebook_edit and notebook_run."""
        try:
            data = await anyio.to_thread.run_sync(notebook_files().read, path)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(f"path: {exc}") from exc
        return _budgeted(text_result(json.dumps(data, indent=1, default=str), data), options, store)

    @server.resource(
        "nbmcp://outputs/{output_id}",
        name="output",
        description="The full text of an output that was cut to the output budget.",
        mime_type="text/plain",
    )
    def full_output(output_id: str) -> str:
        try:
            return store.get(output_id)
        except KeyError as exc:
            raise ResourceError(str(exc.args[0])) from exc

    if options.read_only:
        return server

    # -- execution tools

    @server.tool(annotations=mutating, structured_output=False)
    async def execute(
        ctx: Context,
        code: Annotated[str, Field(description="Code to run, like a notebook cell.")],
        timeout: Annotated[
            float | None, Field(description="Seconds before the kernel is interrupted (default: server's).")
        ] = None,
    ) -> CallToolResult:
        """Run code in the kernel. Returns stream output, results (tables as markdown + structured rows),
        images and errors, in order. Output streams as progress while it runs; at the timeout the kernel
        is interrupted and the partial output returned (variables are kept)."""
        if timeout is not None and not timeout > 0:
            raise ToolError(f"timeout must be a positive number of seconds, got {timeout}")
        handle = await provider.get(ctx)
        session = handle.session
        try:
            outcome = await run_code(handle, code, timeout or options.timeout, ctx)
        except KernelDeadError as exc:
            return error_result(str(exc), session.describe())
        except KernelSessionError as exc:
            return error_result(f"execute: {exc}", session.describe())
        return outcome_result(
            outcome,
            kernel=session.describe(),
            budget=options.output_budget,
            store=store,
            image_max_px=options.image_max_px,
        )

    @server.tool(annotations=mutating, structured_output=False)
    async def interrupt(ctx: Context) -> CallToolResult:
        """Interrupt the running cell (KeyboardInterrupt in the kernel); variables are kept."""
        handle = await provider.get(ctx)
        kernel = handle.session.describe()
        try:
            await handle.session.interrupt()
        except Exception as exc:
            return error_result(f"could not interrupt {kernel_label(kernel)}: {exc}", kernel)
        return text_result(f"interrupted {kernel_label(kernel)}", {"status": "ok", "kernel": kernel})

    @server.tool(annotations=mutating, structured_output=False)
    async def restart(ctx: Context) -> CallToolResult:
        """Restart the kernel: a fresh process, all variables lost. Recovers a dead kernel."""
        handle = await provider.get(ctx)
        started = time.monotonic()
        try:
            await handle.session.restart()
        except Exception as exc:
            return error_result(f"restart failed: {exc}", handle.session.describe())
        kernel = handle.session.describe()
        took = time.monotonic() - started
        return text_result(
            f"restarted {kernel_label(kernel)} in {took:.1f} s; all variables are gone",
            {"status": "ok", "kernel": kernel, "duration_ms": round(took * 1000, 1)},
        )

    @server.tool(annotations=mutating, structured_output=False)
    async def notebook_edit(
        path: Annotated[str, Field(description="Notebook path, relative to the root (created if new).")],
        version: Annotated[str, Field(description="The version token from notebook_read ('' for a new file).")],
        operations: Annotated[
            list[dict[str, Any]],
            Field(
                description=(
                    "Applied in order, all or nothing: {op: 'insert', source, cell_type?, after?|before?}, "
                    "{op: 'replace', cell_id, source, cell_type?}, {op: 'delete', cell_id}."
                )
            ),
        ],
    ) -> CallToolResult:
        """Insert, replace or delete cells by id. Refused if the file changed since notebook_read."""
        from .notebooks import StaleNotebookError

        try:
            data = await anyio.to_thread.run_sync(notebook_files().edit, path, version, operations)
        except StaleNotebookError as exc:
            return error_result(str(exc))
        except KeyError as exc:
            raise ToolError(f"operations: {exc.args[0]}") from exc
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(str(exc)) from exc
        return _budgeted(text_result(json.dumps(data, indent=1, default=str), data), options, store)

    @server.tool(annotations=mutating, structured_output=False)
    async def notebook_run(
        ctx: Context,
        path: Annotated[str, Field(description="Notebook path, relative to the root.")],
        cell_ids: Annotated[
            list[str] | None, Field(description="Code cells to run, in this order (default: all, top to bottom).")
        ] = None,
        version: Annotated[
            str | None, Field(description="Refuse to run if the file is no longer at this version.")
        ] = None,
    ) -> CallToolResult:
        """Run notebook cells in this kernel and write their outputs back into the file. Stops at the
        first cell that fails."""
        from .notebooks import StaleNotebookError

        handle = await provider.get(ctx)
        session = handle.session

        def execute_cell(code: str) -> ExecutionOutcome:
            return anyio.from_thread.run(run_code, handle, code, options.timeout, ctx)

        try:
            data = await anyio.to_thread.run_sync(
                lambda: notebook_files().run_cells(path, cell_ids, execute_cell, version=version)
            )
        except StaleNotebookError as exc:
            return error_result(str(exc), session.describe())
        except KernelDeadError as exc:
            return error_result(str(exc), session.describe())
        except KeyError as exc:
            raise ToolError(f"cell_ids: {exc.args[0]}") from exc
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise ToolError(str(exc)) from exc
        kernel = session.describe()
        converted = content.Converted([])
        lines = []
        failed = False
        for res in data["results"]:
            conv = content.convert_outputs(res["outputs"], image_max_px=options.image_max_px)
            lines.append(f"cell {res['cell_id']}: {res['status']} (In [{res['execution_count']}])")
            converted.content.append(text_result(lines[-1]).content[0])
            converted.extend(conv)
            failed = failed or res["status"] != "ok"
            res["outputs"] = [_output_kind(o) for o in res["outputs"]]
        converted = content.apply_budget(converted, options.output_budget, store)
        structured = {
            "path": data["path"],
            "version": data["version"],
            "results": data["results"],
            "not_written": data["not_written"],
            "truncated": converted.truncated,
            "kernel": kernel,
        }
        return CallToolResult(content=converted.content, structured_content=structured, is_error=failed)

    return server


def _output_kind(output: dict[str, Any]) -> dict[str, Any]:
    from .outputs import output_kinds

    return output_kinds([output])[0]


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not _DOTTED_NAME.match(name):
        raise ToolError(f"name must be a variable name or dotted attribute path (like df.columns), got {name!r}")
    return name


def _budgeted(result: CallToolResult, options: ServeOptions, store: content.OutputStore) -> CallToolResult:
    converted = content.Converted(list(result.content), None, result.is_error)
    cut = content.apply_budget(converted, options.output_budget, store)
    if cut is converted:
        return result
    structured = dict(result.structured_content or {})
    structured["truncated"] = True
    return CallToolResult(content=cut.content, structured_content=structured, is_error=result.is_error)


def _describe_text(d: dict[str, Any]) -> str:
    lines = [f"{d['name']}: {d['type']}"]
    if "shape" in d:
        lines[0] += " shape " + "x".join(map(str, d["shape"]))
    elif "len" in d:
        lines[0] += f" len {d['len']}"
    if d.get("kind") == "frame":
        cols = d.get("columns") or []
        lines.append("columns: " + ", ".join(f"{c.get('name')} ({c.get('dtype')})" for c in cols[:60]))
        if d.get("memory_bytes"):
            lines.append(f"memory: {d['memory_bytes']:,} bytes")
        head = d.get("head") or []
        if head:
            from ..frames import markdown_table

            lines.append("")
            lines.append(markdown_table(head, list(head[0].keys())))
    elif d.get("kind") == "callable":
        if d.get("signature"):
            lines.append(d["signature"])
        if d.get("doc"):
            lines.append(d["doc"])
    else:
        if d.get("dtype"):
            lines.append(f"dtype: {d['dtype']}")
        lines.append(str(d.get("repr", "")))
    if d.get("warning"):
        lines.append(d["warning"])
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- running


def _install_signal_handlers(provider: KernelProvider) -> Callable[[], None]:
    """SIGTERM/SIGINT/SIGHUP: shut our kernels down (bounded), then die of the same signal.

    Cancelling the serving task is not enough: the SDK's stdio transport reads stdin on a worker thread
    that cannot be cancelled, so the process would linger until stdin closes.
    """
    loop = asyncio.get_running_loop()
    installed = []
    terminating: list[asyncio.Task[None]] = []

    async def terminate(signum: int) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(provider.close_all(), 15)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def on_signal(signum: int) -> None:
        if not terminating:
            terminating.append(asyncio.ensure_future(terminate(signum)))

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def remove() -> None:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return remove


async def run_stdio(options: ServeOptions, *, launched: KernelSession | None = None) -> None:
    """Serve over stdin/stdout until stdin closes or a signal arrives; then shut our kernels down."""
    provider = KernelProvider(options)
    provider.start_shared(launched)  # the kernel boots while the client connects
    server = build_server(options, provider)
    remove = _install_signal_handlers(provider)
    try:
        await server.run_stdio_async()
    finally:
        remove()
        with anyio.CancelScope(shield=True):
            await provider.close_all()


async def run_http(
    options: ServeOptions,
    *,
    ready: Callable[[str, str], None] | None = None,
    launched: KernelSession | None = None,
) -> None:
    """Serve streamable HTTP on ``options.host:options.port`` behind the bearer token and Host/Origin
    checks until a signal arrives; each client session gets its own kernel unless ``shared``."""
    import secrets

    import uvicorn

    from ..transport import SecurityMiddleware, bind_socket, loopback_names

    token = options.token or os.environ.get("NBMCP_TOKEN") or secrets.token_urlsafe(32)
    provider = KernelProvider(options)
    if not provider.per_session:
        provider.start_shared(launched)
    elif launched is not None:
        await launched.shutdown()
    server = build_server(options, provider)
    sock = bind_socket(options.host, options.port)
    host, port = sock.getsockname()[:2]
    hosts, origins = loopback_names(options.host, port)
    app = SecurityMiddleware(
        server.streamable_http_app(host=options.host), token=token, allowed_hosts=hosts, allowed_origins=origins
    )
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", ws="none", timeout_graceful_shutdown=2
    )

    class _Server(uvicorn.Server):
        def capture_signals(self) -> Any:  # ours cancel the main task instead (kernels shut down after)
            return contextlib.nullcontext()

    uv = _Server(config)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/mcp"
    remove = _install_signal_handlers(provider)
    serving = asyncio.ensure_future(uv.serve(sockets=[sock]))
    try:
        while not uv.started and not serving.done():
            await asyncio.sleep(0.01)
        if ready is not None and uv.started:
            ready(url, token)
        await serving
    except asyncio.CancelledError:
        pass
    finally:
        remove()
        with anyio.CancelScope(shield=True):
            uv.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(serving), 5)
            await provider.close_all()
            sock.close()


async def serve(options: ServeOptions, *, launched: KernelSession | None = None) -> None:
    """Run ``nbmcp serve`` until stdin closes (stdio) or a signal arrives; ``launched``: the shared kernel,
    already started with :meth:`KernelSession.launch` (so it boots while the server is being set up)."""
    if options.transport != "http":
        await run_stdio(options, launched=launched)
        return
    from ..discovery import remove_connection_file, write_connection_file

    written: list[Path] = []

    def ready(url: str, token: str) -> None:
        info = {"url": url, "token": token, "pid": os.getpid(), "kind": "serve", "kernel_id": None}
        written.append(write_connection_file(f"serve-{os.getpid()}", info))
        print(f"nbmcp serve: {url}", file=sys.stderr)
        print(f"  bearer token: {token[:4]}… (full token in {written[-1]})", file=sys.stderr, flush=True)

    try:
        await run_http(options, ready=ready, launched=launched)
    finally:
        for path in written:
            remove_connection_file(path)


def main_serve(options: ServeOptions) -> int:
    """Run ``nbmcp serve`` to completion (blocking)."""
    asyncio.run(serve(options))
    return 0
