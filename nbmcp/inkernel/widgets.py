"""The notebook panel: server state, clients, tools and resources, live calls, and approvals.

``%mcp panel`` / ``nbmcp.panel()`` show a :class:`Panel`. All panels draw from one shared
:class:`_Controller`, so a panel shown twice (or two panels) always agree. While at least one panel's comm is
open, the controller is the server's ``approver``: a ``confirm=True`` tool or the in-kernel ``execute`` waits
until the owner clicks Approve or Deny (or the approval timeout passes, which denies). With no open panel the
server denies such calls at once.

Threads: server events (calls, list changes) only set a flag; one updater thread redraws the panels from
the server's state, at most every ``MIN_INTERVAL`` seconds, so a call is not slowed by drawing and the panel
updates while a cell runs. Clicks arrive on the kernel's shell thread (or a comm subshell in JupyterLab
4.6+ with ipykernel 7); they resolve approvals and change settings, and the updater thread redraws.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as w

from ..exceptions import ApprovalDenied
from . import lifecycle

__all__ = ["Panel", "PendingApproval", "approve", "current_panel", "deny", "pending_approvals", "show_panel"]

MIN_INTERVAL = 0.05  # seconds between redraws at most (bursts of calls coalesce)
IDLE_INTERVAL = 1.0  # seconds between checks for a started/stopped server and approval countdowns
CALLS_SHOWN = 15
ARGUMENTS_SHOWN = 2_000  # characters of a pending call's arguments shown in the panel
MODES = ("read-only", "tools", "execute")
POLICIES = ("ask", "all", "none")


@dataclass
class PendingApproval:
    """A call waiting for the owner's decision."""

    id: str
    tool: str
    arguments: dict[str, Any]
    client: str
    created: float
    timeout: float
    future: asyncio.Future[bool] = field(repr=False)
    loop: asyncio.AbstractEventLoop = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "arguments": self.arguments,
            "client": self.client,
            "waited_s": round(time.time() - self.created, 3),
            "timeout_s": self.timeout,
        }


def _in_kernel() -> bool:
    """True inside an ipykernel, where a widget's comm reaches a frontend (outside, comms are dummies)."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return False
    return Kernel.initialized()


def _comm_open(widget: w.Widget) -> bool:
    comm = getattr(widget, "comm", None)
    return comm is not None and not getattr(comm, "_closed", False)


def _keep_frontend_routing(widget: w.Widget) -> w.Widget:
    """Let the frontend's messages to ``widget`` run where the frontend sends them.

    JupyterLab 4.6+ sends widget comm messages on a kernel subshell, so a click is handled while a cell runs.
    ipykernel 7 re-routes a comm's incoming messages to the subshell that last sent on the comm -- the main
    shell for widgets created in a cell -- which would queue a click behind the running cell. The panel's
    handlers are thread-safe, so its controls keep the frontend's choice (main shell when no subshell is used).
    """
    comm = getattr(widget, "comm", None)
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = _as_sent
    return widget


def _close_tree(widget: w.Widget) -> None:
    """Close a widget, its children, and its layout and style models (each has a comm of its own)."""
    with contextlib.suppress(Exception):
        for child in getattr(widget, "children", ()):
            _close_tree(child)
        for extra in (getattr(widget, "layout", None), getattr(widget, "style", None)):
            if isinstance(extra, w.Widget):
                extra.close()
        widget.close()


def _as_sent(data: Any, default: Any) -> Any:
    return default


def _set_future(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _fail_future(future: asyncio.Future[bool], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class _Controller:
    """Shared state behind every panel: the attached server, pending approvals, the updater thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._panels: weakref.WeakSet[Panel] = weakref.WeakSet()
        self._pending: dict[str, PendingApproval] = {}
        self._ids = itertools.count(1)
        self._server: Any = None  # the InKernelServer listened to
        self._approver: Any = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_draw = 0.0
        self.message = ""  # a line for the panel (e.g. why a mode could not be set)

    # -- panels --------------------------------------------------------------------------------

    def add_panel(self, panel: Panel) -> None:
        with self._lock:
            self._panels.add(panel)
            self._attach(lifecycle.current_server())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nbmcp-panel", daemon=True)
                self._thread.start()
        self.wake()

    def panel_closed(self) -> None:
        """With no panel left open, stop being the approver now (waiting calls are denied)."""
        with self._lock:
            if not self.open_panels():
                self._attach(None, "the approval panel was closed")
        self.wake()

    def open_panels(self) -> list[Panel]:
        with self._lock:
            return [p for p in self._panels if p.is_open]

    def has_frontend(self) -> bool:
        return _in_kernel() and bool(self.open_panels())

    def wake(self) -> None:
        self._wake.set()

    # -- the server ----------------------------------------------------------------------------

    @property
    def mcp_server(self) -> Any:
        server = self._server
        return server.mcp_server if server is not None else None

    def _attach(self, server: Any, reason: str = "the nbmcp server was stopped") -> None:
        """Listen to ``server`` (an InKernelServer or None) and be its approver; leave the previous one."""
        with self._lock:
            if server is self._server:
                return
            old = self.mcp_server
            if old is not None:
                with contextlib.suppress(ValueError):
                    old.call_listeners.remove(self._on_call)
                with contextlib.suppress(ValueError):
                    old.change_listeners.remove(self._on_change)
                if old.approver is self._approver:
                    old.approver = None
            self._deny_all(reason)
            self._server = server
            self._approver = None
            if server is not None:
                mcp = server.mcp_server
                mcp.call_listeners.append(self._on_call)
                mcp.change_listeners.append(self._on_change)

                async def approver(tool: str, arguments: dict[str, Any], client: str) -> bool:
                    return await self._ask(mcp, tool, arguments, client)

                self._approver = approver
                mcp.approver = approver

    def _on_call(self, record: Any) -> None:  # server thread: keep it cheap
        self._wake.set()

    def _on_change(self, what: str) -> None:
        self._wake.set()

    # -- approvals -----------------------------------------------------------------------------

    async def _ask(self, mcp: Any, tool: str, arguments: dict[str, Any], client: str) -> bool:
        """The approver: wait for a click in a panel, or deny (no panel open, timeout)."""
        if not self.has_frontend():
            where = "no Jupyter frontend to ask" if not _in_kernel() else "no approval panel open in the notebook"
            raise ApprovalDenied(
                f"{tool!r} needs the notebook owner's approval, but there is {where}: the call was declined. "
                "Ask them to run `%mcp panel` in the notebook (or `%mcp approve all`)."
            )
        loop = asyncio.get_running_loop()
        timeout = float(mcp.approval_timeout)
        request = PendingApproval(
            id=str(next(self._ids)),
            tool=tool,
            arguments=dict(arguments),
            client=client,
            created=time.time(),
            timeout=timeout,
            future=loop.create_future(),
            loop=loop,
        )
        with self._lock:
            self._pending[request.id] = request
        self.wake()
        try:
            return await asyncio.wait_for(request.future, timeout)
        except asyncio.TimeoutError:
            raise ApprovalDenied(
                f"the notebook's owner did not answer within {timeout:g} s, so the call to {tool!r} was declined"
            ) from None
        finally:
            with self._lock:
                self._pending.pop(request.id, None)
            self.wake()

    def pending(self) -> list[PendingApproval]:
        with self._lock:
            return list(self._pending.values())

    def resolve(self, request_id: str | None, approved: bool) -> str:
        """Approve or deny one pending call (the oldest if ``request_id`` is None); returns its id."""
        with self._lock:
            if request_id is None:
                if not self._pending:
                    raise LookupError("no call is waiting for approval")
                request_id = next(iter(self._pending))
            request = self._pending.pop(str(request_id), None)
            if request is None:
                waiting = ", ".join(self._pending) or "none"
                raise LookupError(f"no pending approval with id {request_id!r} (waiting: {waiting})")
        with contextlib.suppress(RuntimeError):  # the server's loop is gone: the call is over anyway
            request.loop.call_soon_threadsafe(_set_future, request.future, approved)
        self.wake()
        return request.id

    def _deny_all(self, reason: str) -> None:
        with self._lock:
            requests, self._pending = list(self._pending.values()), {}
        for request in requests:
            denied = ApprovalDenied(f"{reason}, so the call to {request.tool!r} was declined")
            with contextlib.suppress(RuntimeError):
                request.loop.call_soon_threadsafe(_fail_future, request.future, denied)

    # -- the updater thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_INTERVAL)
            # Coalesce bursts: never redraw more often than every MIN_INTERVAL.
            pause = self._last_draw + MIN_INTERVAL - time.monotonic()
            if pause > 0:
                threading.Event().wait(pause)
            self._wake.clear()
            with self._lock:
                panels = self.open_panels()
                if not panels:
                    self._attach(None, "the approval panel was closed")
                    self._thread = None
                    return
                self._attach(lifecycle.current_server())
            try:
                snapshot = self.snapshot()
                for panel in panels:
                    panel._draw(snapshot)
            except Exception as exc:  # keep drawing later; say what went wrong in the panel
                self.message = f"panel update failed: {type(exc).__name__}: {exc}"
            self._last_draw = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """Everything a panel shows, read from the server (plain data, safe to hand to any thread)."""
        server = self._server
        snap: dict[str, Any] = {"running": server is not None, "message": self.message, "pending": self.pending()}
        if server is None:
            return snap
        mcp = server.mcp_server
        registry = mcp.registry
        with mcp._lock:
            served = dict(mcp._served_tools)
            clients = sorted(mcp.clients.values(), key=lambda c: -c.last_seen)
        with registry._lock:
            user_tools = {name: (spec.enabled, spec.confirm, spec.read_only) for name, spec in registry.tools.items()}
            objects = {name: obj.enabled for name, obj in registry.objects.items()}
            resources = {uri: spec.enabled for uri, spec in registry.resources.items()}
        audit = getattr(server, "audit", None)
        snap.update(
            url=server.info.url,
            mode=mcp.mode,
            can_execute=mcp.execute_runner is not None,
            policy=mcp.approval_policy,
            timeout=float(mcp.approval_timeout),
            clients=[(c.name, c.version, c.protocol_version, c.requests, c.last_seen) for c in clients],
            calls=list(mcp.calls)[-CALLS_SHOWN:],
            builtin=sorted(name for name, spec in served.items() if spec.builtin),
            served=set(served),
            user_tools=user_tools,
            objects=objects,
            resources=resources,
            audit=str(audit.path) if audit is not None else None,
        )
        return snap

    # -- settings (from panels or code) --------------------------------------------------------

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        mcp = self._require()
        mcp.registry.set_tool_enabled(name, enabled)

    def set_resource_enabled(self, kind: str, key: str, enabled: bool) -> None:
        """Enable or disable an exposed object (``kind="objects"``) or a user resource (``"resources"``)."""
        registry = self._require().registry
        if kind == "objects":
            registry.set_object_enabled(key, enabled)
        else:
            registry.set_resource_enabled(key, enabled)

    def _require(self) -> Any:
        mcp = self.mcp_server
        if mcp is None:
            server = lifecycle.current_server()
            if server is None:
                raise RuntimeError("the MCP server is not running: `%mcp start` starts it")
            mcp = server.mcp_server
        return mcp


_controller = _Controller()


# -- drawing -------------------------------------------------------------------------------------

_CSS = "font-size:12px;border-collapse:collapse"
_CELL = "padding:1px 8px 1px 0;text-align:left;white-space:nowrap"
_OUTCOME_COLORS = {"ok": "#1a7f37", "error": "#cf222e", "denied": "#9a6700"}


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<i style='font-size:12px'>{html.escape(empty)}</i>"
    head = "".join(f"<th style='{_CELL}'>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='{_CELL}'>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table style='{_CSS}'><tr>{head}</tr>{body}</table>"


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def _arguments_text(arguments: dict[str, Any]) -> str:
    try:
        text = json.dumps(arguments, indent=1, ensure_ascii=False, default=repr)
    except Exception:
        text = repr(arguments)
    if len(text) > ARGUMENTS_SHOWN:
        text = text[:ARGUMENTS_SHOWN] + f"\n… {len(text) - ARGUMENTS_SHOWN} more characters"
    return text


class Panel(w.VBox):
    """The nbmcp panel (an ipywidgets ``VBox``); also the Python API its buttons call.

    ``approve()`` / ``deny()`` decide the oldest pending call (or the one with the given id); ``mode``,
    ``approval_policy`` and ``approval_timeout`` read and set the server's settings.
    """

    def __init__(self, controller: _Controller | None = None, **kwargs: Any) -> None:
        self._controller = controller or _controller
        self._created = time.monotonic()
        self._lock = threading.RLock()
        self._local = threading.local()
        self._owned: list[w.Widget] = []
        self._approval_rows: dict[str, w.Widget] = {}
        self._toggles: dict[tuple[str, str], w.Checkbox] = {}

        self._header = self._own(w.HTML())
        self._mode = self._own_control(
            w.ToggleButtons(
                options=list(MODES),
                description="Mode",
                tooltips=[
                    "only the built-in read tools",
                    "your tools and the built-in read tools",
                    "adds `execute`: the assistant may run code in this kernel",
                ],
                style={"button_width": "90px"},
            )
        )
        self._policy = self._own_control(
            w.ToggleButtons(
                options=list(POLICIES),
                description="Approvals",
                tooltips=["ask here for each call", "approve every call", "deny every call"],
                style={"button_width": "56px"},
            )
        )
        self._timeout = self._own_control(
            w.BoundedFloatText(
                min=1,
                max=86_400,
                step=1,
                description="Timeout (s)",
                continuous_update=False,
                layout=w.Layout(width="170px"),
            )
        )
        self._timeout.add_class("nbmcp-timeout")
        self._message = self._own(w.HTML())
        self._approvals_title = self._own(w.HTML())
        self._approvals = self._own(w.VBox())
        self._approvals.add_class("nbmcp-approvals")
        self._calls = self._own(w.HTML())
        self._calls.add_class("nbmcp-calls")
        self._clients = self._own(w.HTML())
        self._tools = self._own(w.VBox())
        self._resources = self._own(w.VBox())
        tabs = self._own(
            w.Tab(
                children=[self._calls, self._clients, self._tools, self._resources],
                titles=["Calls", "Clients", "Tools", "Resources"],
            )
        )
        controls = self._own(w.HBox([self._mode, self._policy, self._timeout], layout=w.Layout(flex_flow="row wrap")))
        super().__init__(
            [self._header, controls, self._message, self._approvals_title, self._approvals, tabs],
            layout=w.Layout(border="1px solid #d0d7de", padding="6px", max_width="980px"),
            **kwargs,
        )
        self.add_class("nbmcp-panel")
        self._mode.observe(self._on_mode, "value")
        self._policy.observe(self._on_policy, "value")
        self._timeout.observe(self._on_timeout, "value")
        self._controller.add_panel(self)
        self._draw(self._controller.snapshot())

    def _own_control(self, widget: Any) -> Any:
        return self._own(_keep_frontend_routing(widget))

    def _own(self, widget: Any) -> Any:
        self._owned.append(widget)
        return widget

    # -- the Python API ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return _comm_open(self)

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Calls waiting for a decision, oldest first."""
        return [p.as_dict() for p in self._controller.pending()]

    def approve(self, request_id: str | None = None) -> str:
        """Approve a pending call (the oldest by default); returns its id. What the Approve button does."""
        return self._controller.resolve(request_id, True)

    def deny(self, request_id: str | None = None) -> str:
        """Deny a pending call (the oldest by default); returns its id. What the Deny button does."""
        return self._controller.resolve(request_id, False)

    @property
    def mode(self) -> str:
        return self._controller._require().mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._controller._require().set_mode(value)
        self._controller.wake()

    @property
    def approval_policy(self) -> str:
        return self._controller._require().approval_policy

    @approval_policy.setter
    def approval_policy(self, value: str) -> None:
        if value not in POLICIES:
            raise ValueError(f"approval policy must be 'ask', 'all' or 'none', not {value!r}")
        self._controller._require().approval_policy = value
        self._controller.wake()

    @property
    def approval_timeout(self) -> float:
        return float(self._controller._require().approval_timeout)

    @approval_timeout.setter
    def approval_timeout(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the approval timeout must be positive, not {seconds!r}")
        self._controller._require().approval_timeout = float(seconds)
        self._controller.wake()

    def refresh(self) -> None:
        """Redraw now (the panel also redraws by itself on every change)."""
        self._draw(self._controller.snapshot())

    def close(self) -> None:
        """Close the panel and everything in it. With no panel open, approvals are denied at once."""
        with self._lock:
            for widget in [*self._approval_rows.values(), *self._toggles.values(), *self._owned]:
                _close_tree(widget)
            for extra in (self.layout, getattr(self, "style", None)):
                if extra is not None:
                    extra.close()
            self._approval_rows.clear()
            self._toggles.clear()
            super().close()
        self._controller.panel_closed()

    # -- frontend events (shell thread or a comm subshell) -------------------------------------

    def _drawing(self) -> bool:
        return getattr(self._local, "drawing", False)

    def _report(self, error: Exception | None) -> None:
        self._controller.message = f"{type(error).__name__}: {error}" if error else ""
        self._controller.wake()

    def _on_mode(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.mode = change["new"]
        except Exception as exc:
            self._report(exc)
        else:
            self._report(None)

    def _on_policy(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.approval_policy = change["new"]
        except Exception as exc:
            self._report(exc)

    def _on_timeout(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.approval_timeout = change["new"]
        except Exception as exc:
            self._report(exc)

    def _on_toggle(self, kind: str, key: str, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            if kind == "tools":
                self._controller.set_tool_enabled(key, bool(change["new"]))
            else:
                self._controller.set_resource_enabled(kind, key, bool(change["new"]))
        except Exception as exc:
            self._report(exc)

    def _on_decision(self, request_id: str, approved: bool) -> None:
        with contextlib.suppress(LookupError):  # already decided (another view, or timed out)
            self._controller.resolve(request_id, approved)

    # -- drawing (updater thread; the first draw on the creating thread) -----------------------

    def _draw(self, snap: dict[str, Any]) -> None:
        with self._lock:
            if not self.is_open:
                return
            self._local.drawing = True
            try:
                self._draw_header(snap)
                self._draw_approvals(snap["pending"])
                if snap["running"]:
                    self._draw_tables(snap)
                    self._draw_toggles(snap)
            finally:
                self._local.drawing = False

    @staticmethod
    def _set_if_changed(widget: w.Widget, **values: Any) -> None:
        for name, value in values.items():
            if getattr(widget, name) != value:
                setattr(widget, name, value)

    def _draw_header(self, snap: dict[str, Any]) -> None:
        if not snap["running"]:
            self._set_if_changed(
                self._header,
                value="<b>nbmcp</b> &nbsp;<span style='color:#cf222e'>not running</span> — "
                "<code>%mcp start</code> starts the server",
            )
            self._set_if_changed(self._message, value="")
            return
        clients = len({c[0] for c in snap["clients"]})
        audit = f" · audit log <code>{html.escape(snap['audit'])}</code>" if snap["audit"] else ""
        self._set_if_changed(
            self._header,
            value=(
                f"<b>nbmcp</b> &nbsp;<span style='color:#1a7f37'>serving</span> <code>{html.escape(snap['url'])}</code>"
                f" · mode <b>{html.escape(snap['mode'])}</b> · {clients} client{'s' if clients != 1 else ''}"
                f"<span style='font-size:11px;color:#57606a'>{audit}</span>"
            ),
        )
        self._set_if_changed(self._mode, value=snap["mode"])
        self._set_if_changed(self._policy, value=snap["policy"])
        self._set_if_changed(self._timeout, value=snap["timeout"])
        message = snap["message"]
        self._set_if_changed(
            self._message,
            value=f"<span style='color:#cf222e;font-size:12px'>{html.escape(message)}</span>" if message else "",
        )

    def _draw_approvals(self, pending: list[PendingApproval]) -> None:
        count = len(pending)
        title = (
            f"<b style='color:#9a6700'>{count} call{'s' if count != 1 else ''} waiting for your approval</b>"
            if count
            else "<span style='font-size:12px;color:#57606a'>No calls waiting for approval.</span>"
        )
        self._set_if_changed(self._approvals_title, value=title)
        wanted = {p.id: p for p in pending}
        for request_id in list(self._approval_rows):
            if request_id not in wanted:
                _close_tree(self._approval_rows.pop(request_id))
        for request_id, request in wanted.items():
            row = self._approval_rows.get(request_id)
            if row is None:
                row = self._approval_row(request)
                self._approval_rows[request_id] = row
            left = max(0.0, request.created + request.timeout - time.time())
            self._set_if_changed(row.children[0], value=self._approval_text(request, left))
        children = tuple(self._approval_rows[i] for i in wanted)
        if self._approvals.children != children:
            self._approvals.children = children

    @staticmethod
    def _approval_text(request: PendingApproval, left: float) -> str:
        return (
            f"<div style='font-size:12px'><b>{html.escape(request.client)}</b> wants to call "
            f"<code>{html.escape(request.tool)}</code> <span style='color:#57606a'>(asked {_clock(request.created)}, "
            f"denied in {left:.0f} s without an answer)</span>"
            f"<pre style='margin:2px 0;max-height:160px;overflow:auto;font-size:11px'>"
            f"{html.escape(_arguments_text(request.arguments))}</pre></div>"
        )

    def _approval_row(self, request: PendingApproval) -> w.HBox:
        text = w.HTML(layout=w.Layout(flex="1 1 auto"))
        approve = w.Button(description="Approve", button_style="success", icon="check", tooltip="run this call")
        deny = w.Button(description="Deny", button_style="danger", icon="times", tooltip="refuse this call")
        _keep_frontend_routing(approve)
        _keep_frontend_routing(deny)
        approve.add_class("nbmcp-approve")
        deny.add_class("nbmcp-deny")
        approve.on_click(lambda _: self._on_decision(request.id, True))
        deny.on_click(lambda _: self._on_decision(request.id, False))
        row = w.HBox([text, approve, deny], layout=w.Layout(align_items="center", border_bottom="1px solid #eee"))
        row.add_class("nbmcp-approval")
        return row

    def _draw_tables(self, snap: dict[str, Any]) -> None:
        calls = [
            [
                _clock(c.time),
                html.escape(c.client[:24]),
                c.kind,
                f"<code>{html.escape(c.name[:48])}</code>",
                f"{c.duration_ms:.1f} ms",
                f"<span style='color:{_OUTCOME_COLORS.get(c.outcome, '#000')}'"
                f" title='{html.escape(c.error or '', quote=True)}'>{c.outcome}</span>",
            ]
            for c in reversed(snap["calls"])
        ]
        self._set_if_changed(
            self._calls,
            value=_table(["time", "client", "kind", "name", "duration", "outcome"], calls, "No calls yet."),
        )
        clients = [
            [html.escape(name), html.escape(version or ""), html.escape(protocol), str(requests), _clock(seen)]
            for name, version, protocol, requests, seen in snap["clients"]
        ]
        self._set_if_changed(
            self._clients,
            value=_table(["client", "version", "protocol", "requests", "last seen"], clients, "No client yet."),
        )

    def _draw_toggles(self, snap: dict[str, Any]) -> None:
        served = snap["served"]
        tool_rows: list[tuple[tuple[str, str], str, bool, bool]] = []
        for name in snap["builtin"]:
            tool_rows.append((("builtin", name), f"{name} (built-in)", True, True))
        hidden = " — hidden in read-only mode" if snap["mode"] == "read-only" else ""
        for name, (enabled, confirm, read_only) in sorted(snap["user_tools"].items()):
            flags = ", ".join(f for f, on in (("asks first", confirm), ("read-only", read_only)) if on)
            label = name + (f" ({flags})" if flags else "") + (hidden if enabled and name not in served else "")
            tool_rows.append((("tools", name), label, enabled, False))
        resource_rows = [
            (("objects", n), f"nbmcp://objects/{n}", on, False) for n, on in sorted(snap["objects"].items())
        ]
        resource_rows += [(("resources", uri), uri, on, False) for uri, on in sorted(snap["resources"].items())]
        self._sync_toggles(self._tools, tool_rows, "No tools.")
        self._sync_toggles(self._resources, resource_rows, "No resources: nbmcp.expose(df, 'name').")

    def _sync_toggles(self, box: w.VBox, rows: list[tuple[tuple[str, str], str, bool, bool]], empty: str) -> None:
        children = []
        for key, label, value, disabled in rows:
            toggle = self._toggles.get(key)
            if toggle is None:
                toggle = _keep_frontend_routing(w.Checkbox(indent=False, layout=w.Layout(width="auto")))
                toggle.add_class("nbmcp-toggle")
                kind, name = key
                if kind != "builtin":
                    toggle.observe(lambda change, k=kind, n=name: self._on_toggle(k, n, change), "value")
                self._toggles[key] = toggle
            self._set_if_changed(toggle, description=label, value=value, disabled=disabled)
            children.append(toggle)
        if not children:
            children = [self._empty_label(box, empty)]
        if box.children != tuple(children):
            empty_label = self._toggles.get(("empty", str(id(box))))
            gone = [c for c in box.children if c not in children and c is not empty_label]
            box.children = tuple(children)
            for toggle in gone:  # a tool or resource that no longer exists
                self._toggles = {k: t for k, t in self._toggles.items() if t is not toggle}
                _close_tree(toggle)

    def _empty_label(self, box: w.VBox, text: str) -> w.HTML:
        key = ("empty", str(id(box)))
        label = self._toggles.get(key)
        if label is None:
            label = w.HTML(f"<i style='font-size:12px'>{html.escape(text)}</i>")
            self._toggles[key] = label  # type: ignore[assignment]
        return label  # type: ignore[return-value]


# -- module API ----------------------------------------------------------------------------------


def current_panel() -> Panel | None:
    """The most recently shown panel that is still open, or None."""
    panels = _controller.open_panels()
    return max(panels, key=lambda p: p._created) if panels else None


def show_panel() -> Panel:
    """The panel (shown again if one is open: every view shares one model, so they stay consistent)."""
    return current_panel() or Panel()


def pending_approvals() -> list[dict[str, Any]]:
    """Calls waiting for the owner's decision, oldest first."""
    return [p.as_dict() for p in _controller.pending()]


def approve(request_id: str | None = None) -> str:
    """Approve a pending call (the oldest by default)."""
    return _controller.resolve(request_id, True)


def deny(request_id: str | None = None) -> str:
    """Deny a pending call (the oldest by default)."""
    return _controller.resolve(request_id, False)
