"""What the panel shows, and the hub that keeps every open panel current.

All panels draw from one :class:`PanelHub`, so a panel shown twice (or two panels) always agree. While a panel
is open the hub listens to the running server and has the approval broker serve as its ``approver``; with no
panel open, the broker lets go and approvals are denied at once.

Threads: server events (calls, list changes, approval requests) only set a flag; one updater thread takes a
:class:`PanelState` from the servers' public snapshots and redraws the panels, at most every ``MIN_INTERVAL``
seconds, so a call is not slowed by drawing and the panel updates while a cell runs. No widgets here: a panel
is anything with ``is_open``, ``created`` and ``draw(state)``; the text it draws (tables, times, a call's
arguments) is made here, and :class:`PanelShown` is what a drawn panel shows, read back.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import lifecycle
from .approvals import ApprovalBroker, PendingApproval, broker

if TYPE_CHECKING:
    from ..registry import ToolSpec
    from ..server import CallRecord, ClientRecord, NbMCPServer

__all__ = [
    "CALLS_SHOWN",
    "PanelHub",
    "PanelShown",
    "PanelState",
    "PanelView",
    "ShownApproval",
    "ShownControl",
    "abandoned_note",
    "arguments_text",
    "clock",
    "html_table",
    "hub",
]

MIN_INTERVAL = 0.05  # seconds between redraws at most (bursts of calls coalesce)
IDLE_INTERVAL = 1.0  # seconds between checks for a started/stopped server and approval countdowns
CALLS_SHOWN = 15
ARGUMENTS_SHOWN = 2_000  # characters of a pending call's arguments shown in the panel


class PanelView(Protocol):
    """What the hub needs of a panel."""

    @property
    def is_open(self) -> bool: ...
    @property
    def created(self) -> float: ...
    def draw(self, state: PanelState) -> None: ...


@dataclass(frozen=True)
class PanelState:
    """Everything a panel shows, at one moment: plain data, safe to hand to any thread."""

    running: bool
    message: str
    pending: list[PendingApproval]
    url: str = ""
    mode: str = ""
    can_execute: bool = False
    policy: str = "ask"
    timeout: float = 0.0
    clients: list[ClientRecord] = field(default_factory=list)  # newest first
    calls: list[CallRecord] = field(default_factory=list)  # the last CALLS_SHOWN, oldest first
    builtin: list[str] = field(default_factory=list)  # built-in tools served
    served: set[str] = field(default_factory=set)  # every tool name served in the current mode
    user_tools: dict[str, ToolSpec] = field(default_factory=dict)
    objects: dict[str, bool] = field(default_factory=dict)  # exposed name -> enabled
    resources: dict[str, bool] = field(default_factory=dict)  # user resource URI -> enabled
    audit: str | None = None  # the audit log's path
    abandoned: dict[str, int] = field(default_factory=dict)  # tool -> timed-out calls whose threads still run
    max_abandoned: int = 0  # past this many, a tool is refused


@dataclass(frozen=True)
class ShownControl:
    """One control of a drawn panel: its label, value, whether it is greyed out, and the id of its widget model
    (where a frontend sends a click on it)."""

    label: str
    value: Any
    disabled: bool
    model_id: str

    @classmethod
    def of(cls, control: Any) -> ShownControl:
        """Read an ipywidgets control: ``description``, ``value`` (None for a button), ``disabled``, ``model_id``."""
        return cls(control.description, getattr(control, "value", None), control.disabled, control.model_id)


@dataclass(frozen=True)
class ShownApproval:
    """A pending call as a drawn panel shows it: the request (HTML) and its two buttons."""

    text: str
    approve: ShownControl
    deny: ShownControl

    @classmethod
    def of(cls, row: Any) -> ShownApproval:
        """Read a pending call's row: a box of the request's HTML, then the Approve and Deny buttons."""
        text, approve, deny = row.children
        return cls(text.value, ShownControl.of(approve), ShownControl.of(deny))


@dataclass(frozen=True)
class PanelShown:
    """What a panel shows at one moment, read back from its widgets: the texts are the HTML drawn."""

    header: str  # server, URL, mode and clients, or "not running"
    message: str  # why a change failed, abandoned calls
    approvals_title: str  # the line above the pending calls
    approvals: dict[str, ShownApproval]  # request id -> its row, oldest first
    calls: str  # the Calls tab's table
    clients: str  # the Clients tab's table
    mode: ShownControl
    policy: ShownControl
    timeout: ShownControl
    toggles: dict[tuple[str, str], ShownControl]  # ("builtin"|"tools"|"objects"|"resources", name) -> checkbox


# -- the text a panel draws ----------------------------------------------------------------------

_CSS = "font-size:12px;border-collapse:collapse"
_CELL = "padding:1px 8px 1px 0;text-align:left;white-space:nowrap"
OUTCOME_COLORS = {"ok": "#1a7f37", "error": "#cf222e", "denied": "#9a6700"}


def html_table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    """A small HTML table (``rows`` are HTML already), or ``empty`` in italics when there are no rows."""
    if not rows:
        return f"<i style='font-size:12px'>{html.escape(empty)}</i>"
    head = "".join(f"<th style='{_CELL}'>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='{_CELL}'>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table style='{_CSS}'><tr>{head}</tr>{body}</table>"


def clock(stamp: float) -> str:
    """A ``time.time()`` stamp as the local time of day."""
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def arguments_text(arguments: dict[str, Any]) -> str:
    """A pending call's arguments as indented JSON (repr if they are not JSON), cut at ``ARGUMENTS_SHOWN``."""
    try:
        text = json.dumps(arguments, indent=1, ensure_ascii=False, default=repr)
    except Exception:
        text = repr(arguments)
    if len(text) > ARGUMENTS_SHOWN:
        text = text[:ARGUMENTS_SHOWN] + f"\n… {len(text) - ARGUMENTS_SHOWN} more characters"
    return text


def abandoned_note(abandoned: dict[str, int], limit: int) -> str:
    """One line on the tools whose timed-out calls still hold threads ("" if none), for the panel and ``%mcp``."""
    if not abandoned:
        return ""
    parts = [
        f"{name} ({count}{', refused until they end' if limit and count >= limit else ''})"
        for name, count in sorted(abandoned.items())
    ]
    return (
        f"calls that timed out but still run: {', '.join(parts)}. A tool with {limit} is refused until they end; "
        "fix the tool or restart the kernel"
    )


class PanelHub:
    """The open panels, the server they show, and the updater thread."""

    def __init__(self, approvals: ApprovalBroker) -> None:
        self._lock = threading.RLock()
        self._panels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._approvals = approvals
        self._server: Any = None  # the InKernelServer listened to
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_draw = 0.0
        self.message = ""
        """A line for the panels (e.g. why a mode could not be set); cleared by a successful change."""
        approvals.on_change(self.wake)

    # -- panels --------------------------------------------------------------------------------

    def add_panel(self, panel: PanelView) -> None:
        """Show this hub's state in ``panel`` from now on (it leaves when it closes)."""
        with self._lock:
            self._panels.add(panel)
            self._attach(lifecycle.current_server())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nbmcp-panel", daemon=True)
                self._thread.start()
        self.wake()

    def panel_closed(self) -> None:
        """With no panel left open, stop approving now (waiting calls are denied)."""
        with self._lock:
            if not self.open_panels():
                self._attach(None, "the approval panel was closed")
        self.wake()

    def open_panels(self) -> list[Any]:
        with self._lock:
            return [p for p in self._panels if p.is_open]

    def wake(self) -> None:
        """Redraw soon (cheap, any thread)."""
        self._wake.set()

    def report(self, error: Exception | None) -> None:
        """Show why a change from a panel failed (None clears the message)."""
        self.message = f"{type(error).__name__}: {error}" if error else ""
        self.wake()

    # -- the server ----------------------------------------------------------------------------

    def _attach(self, server: Any, reason: str = "the nbmcp server was stopped") -> None:
        """Listen to ``server`` (an InKernelServer or None) and approve its calls; leave the previous one."""
        with self._lock:
            if server is self._server:
                return
            if self._server is not None:
                old = self._server.mcp_server
                with contextlib.suppress(ValueError):
                    old.call_listeners.remove(self._on_call)
                with contextlib.suppress(ValueError):
                    old.change_listeners.remove(self._on_change)
            self._approvals.release(reason)
            self._server = server
            if server is not None:
                mcp = server.mcp_server
                mcp.call_listeners.append(self._on_call)
                mcp.change_listeners.append(self._on_change)
                self._approvals.serve(mcp, lambda: bool(self.open_panels()))

    def _on_call(self, record: Any) -> None:  # server thread: keep it cheap
        self._wake.set()

    def _on_change(self, what: str) -> None:
        self._wake.set()

    def require_server(self) -> NbMCPServer:
        """The server the panels show (or the running one); RuntimeError saying how to start one."""
        server = self._server or lifecycle.current_server()
        if server is None:
            raise RuntimeError("the MCP server is not running: `%mcp start` starts it")
        return server.mcp_server

    def set_tool_enabled(self, name: str, enabled: bool) -> None:
        self.require_server().registry.set_tool_enabled(name, enabled)

    def set_resource_enabled(self, kind: str, key: str, enabled: bool) -> None:
        """Enable or disable an exposed object (``kind="objects"``) or a user resource (``"resources"``)."""
        registry = self.require_server().registry
        if kind == "objects":
            registry.set_object_enabled(key, enabled)
        else:
            registry.set_resource_enabled(key, enabled)

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
                state = self.state()
                for panel in panels:
                    panel.draw(state)
            except Exception as exc:  # keep drawing later; say what went wrong in the panel
                self.message = f"panel update failed: {type(exc).__name__}: {exc}"
            self._last_draw = time.monotonic()

    def state(self) -> PanelState:
        """What the panels show now, from the server's and the registry's snapshots."""
        server = self._server
        pending = self._approvals.pending()
        if server is None:
            return PanelState(running=False, message=self.message, pending=pending)
        mcp = server.mcp_server
        served = mcp.snapshot()
        registered = mcp.registry.snapshot()
        audit = server.audit
        return PanelState(
            running=True,
            message=self.message,
            pending=pending,
            url=server.info.url,
            mode=served.mode,
            can_execute=mcp.execute_runner is not None,
            policy=mcp.approval_policy,
            timeout=float(mcp.approval_timeout),
            clients=served.clients,
            calls=served.calls[-CALLS_SHOWN:],
            builtin=sorted(name for name, spec in served.served_tools.items() if spec.builtin),
            served=set(served.served_tools),
            user_tools=registered.tools,
            objects={name: obj.enabled for name, obj in registered.objects.items()},
            resources={uri: spec.enabled for uri, spec in registered.resources.items()},
            audit=str(audit.path) if audit is not None else None,
            abandoned=served.tool_pool.abandoned if served.tool_pool else {},
            max_abandoned=served.tool_pool.max_abandoned if served.tool_pool else 0,
        )


hub = PanelHub(broker)
"""The kernel's one hub: every panel registers here."""
