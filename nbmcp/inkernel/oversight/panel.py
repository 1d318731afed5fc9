"""The notebook panel: server state, clients, tools and resources, live calls, and approvals.

``%mcp panel`` / ``nbmcp.panel()`` show a :class:`Panel`, an ipywidgets ``VBox``. Its state comes from the
:data:`~nbmcp.inkernel.oversight.panel_state.hub` (which redraws every open panel from its own thread); its Approve and
Deny buttons decide the :data:`~nbmcp.inkernel.oversight.approvals.broker`'s requests; its toggles and controls change
the server through its public API. Clicks arrive on the kernel's shell thread (or a comm subshell in
JupyterLab 4.6+ with ipykernel 7); the handlers are thread-safe.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from typing import Any

import comm
import ipywidgets as w

from .approvals import PendingApproval, broker
from .panel_state import (
    OUTCOME_COLORS,
    PanelHub,
    PanelShown,
    PanelState,
    ShownApproval,
    ShownControl,
    abandoned_note,
    arguments_text,
    clock,
    html_table,
    hub,
)

__all__ = ["Panel", "current_panel", "open_panels", "show_panel"]

MODES = ("read-only", "tools", "execute")
POLICIES = ("ask", "all", "none", "client")


def _comm_open(widget: w.Widget) -> bool:
    """True while the widget's comm is registered: closing it on either side unregisters it."""
    channel = getattr(widget, "comm", None)
    return channel is not None and comm.get_comm_manager().comms.get(channel.comm_id) is channel


def _keep_frontend_routing(widget: w.Widget) -> w.Widget:
    """Let the frontend's messages to ``widget`` run where the frontend sends them.

    JupyterLab 4.6+ sends widget comm messages on a kernel subshell, so a click is handled while a cell runs.
    ipykernel 7 re-routes a comm's incoming messages to the subshell that last sent on the comm -- the main
    shell for widgets created in a cell -- which would queue a click behind the running cell. The panel's
    handlers are thread-safe, so its controls keep the frontend's choice (main shell when no subshell is used).
    ipykernel has no public switch for this: its kernel asks the comm's ``_reply_subshell_for`` hook.
    """
    channel = getattr(widget, "comm", None)
    if channel is not None and hasattr(channel, "_reply_subshell_for"):
        channel._reply_subshell_for = _as_sent
    return widget


def _as_sent(data: Any, default: Any) -> Any:
    return default


def _close_tree(widget: w.Widget) -> None:
    """Close a widget, its children, and its layout and style models (each has a comm of its own)."""
    with contextlib.suppress(Exception):
        for child in getattr(widget, "children", ()):
            _close_tree(child)
        for extra in (getattr(widget, "layout", None), getattr(widget, "style", None)):
            if isinstance(extra, w.Widget):
                extra.close()
        widget.close()


class Panel(w.VBox):
    """The nbmcp panel (an ipywidgets ``VBox``); also the Python API its buttons call.

    ``approve()`` / ``deny()`` decide the oldest pending call (or the one with the given id); ``mode``,
    ``approval_policy`` and ``approval_timeout`` read and set the server's settings; ``shown`` reads back what
    the panel shows.
    """

    def __init__(self, hub: PanelHub = hub, **kwargs: Any) -> None:
        self._hub = hub
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
                tooltips=[
                    "ask here for each call",
                    "approve every call",
                    "deny every call",
                    "ask here while this panel is open, else the assistant's user (elicitation)",
                ],
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
        self._hub.add_panel(self)
        self.draw(self._hub.state())

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
    def created(self) -> float:
        """When the panel was made (``time.monotonic()``): the newest open one is the current panel."""
        return self._created

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Calls waiting for a decision, oldest first."""
        return [p.as_dict() for p in broker.pending()]

    def approve(self, request_id: str | None = None) -> str:
        """Approve a pending call (the oldest by default); returns its id. What the Approve button does."""
        return broker.resolve(request_id, True)

    def deny(self, request_id: str | None = None) -> str:
        """Deny a pending call (the oldest by default); returns its id. What the Deny button does."""
        return broker.resolve(request_id, False)

    @property
    def mode(self) -> str:
        return self._hub.require_server().mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._hub.require_server().set_mode(value)
        self._hub.wake()

    @property
    def approval_policy(self) -> str:
        return self._hub.require_server().approval_policy

    @approval_policy.setter
    def approval_policy(self, value: str) -> None:
        if value not in POLICIES:
            raise ValueError(f"approval policy must be 'ask', 'all' or 'none', not {value!r}")
        self._hub.require_server().approval_policy = value
        self._hub.wake()

    @property
    def approval_timeout(self) -> float:
        return float(self._hub.require_server().approval_timeout)

    @approval_timeout.setter
    def approval_timeout(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the approval timeout must be positive, not {seconds!r}")
        self._hub.require_server().approval_timeout = float(seconds)
        self._hub.wake()

    @property
    def shown(self) -> PanelShown:
        """What the panel shows now (read-only): its texts and controls as drawn, e.g. for a test."""
        with self._lock:
            return PanelShown(
                header=self._header.value,
                message=self._message.value,
                approvals_title=self._approvals_title.value,
                approvals={request_id: ShownApproval.of(row) for request_id, row in self._approval_rows.items()},
                calls=self._calls.value,
                clients=self._clients.value,
                mode=ShownControl.of(self._mode),
                policy=ShownControl.of(self._policy),
                timeout=ShownControl.of(self._timeout),
                toggles={key: ShownControl.of(t) for key, t in self._toggles.items() if key[0] != "empty"},
            )

    def refresh(self) -> None:
        """Redraw now (the panel also redraws by itself on every change)."""
        self.draw(self._hub.state())

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
        self._hub.panel_closed()

    # -- frontend events (shell thread or a comm subshell) -------------------------------------

    def _drawing(self) -> bool:
        return getattr(self._local, "drawing", False)

    def _on_mode(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.mode = change["new"]
        except Exception as exc:
            self._hub.report(exc)
        else:
            self._hub.report(None)

    def _on_policy(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.approval_policy = change["new"]
        except Exception as exc:
            self._hub.report(exc)

    def _on_timeout(self, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            self.approval_timeout = change["new"]
        except Exception as exc:
            self._hub.report(exc)

    def _on_toggle(self, kind: str, key: str, change: dict[str, Any]) -> None:
        if self._drawing():
            return
        try:
            if kind == "tools":
                self._hub.set_tool_enabled(key, bool(change["new"]))
            else:
                self._hub.set_resource_enabled(kind, key, bool(change["new"]))
        except Exception as exc:
            self._hub.report(exc)

    def _on_decision(self, request_id: str, approved: bool) -> None:
        with contextlib.suppress(LookupError):  # already decided (another view, or timed out)
            broker.resolve(request_id, approved)

    # -- drawing (updater thread; the first draw on the creating thread) -----------------------

    def draw(self, state: PanelState) -> None:
        """Show ``state`` (the hub's updater thread calls this; widgets only change where values differ)."""
        with self._lock:
            if not self.is_open:
                return
            self._local.drawing = True
            try:
                self._draw_header(state)
                self._draw_approvals(state)
                if state.running:
                    self._draw_tables(state)
                    self._draw_toggles(state)
            finally:
                self._local.drawing = False

    @staticmethod
    def _set_if_changed(widget: w.Widget, **values: Any) -> None:
        for name, value in values.items():
            if getattr(widget, name) != value:
                setattr(widget, name, value)

    def _draw_header(self, state: PanelState) -> None:
        if not state.running:
            self._set_if_changed(
                self._header,
                value="<b>nbmcp</b> &nbsp;<span style='color:#cf222e'>not running</span> — "
                "<code>%mcp start</code> starts the server",
            )
            self._set_if_changed(self._message, value="")
            return
        clients = len({c.name for c in state.clients})
        audit = f" · audit log <code>{html.escape(state.audit)}</code>" if state.audit else ""
        self._set_if_changed(
            self._header,
            value=(
                f"<b>nbmcp</b> &nbsp;<span style='color:#1a7f37'>serving</span> <code>{html.escape(state.url)}</code>"
                f" · mode <b>{html.escape(state.mode)}</b> · {clients} client{'s' if clients != 1 else ''}"
                f"<span style='font-size:11px;color:#57606a'>{audit}</span>"
            ),
        )
        self._set_if_changed(self._mode, value=state.mode)
        self._set_if_changed(self._policy, value=state.policy)
        self._set_if_changed(self._timeout, value=state.timeout)
        message = " · ".join(m for m in (state.message, abandoned_note(state.abandoned, state.max_abandoned)) if m)
        self._set_if_changed(
            self._message,
            value=f"<span style='color:#cf222e;font-size:12px'>{html.escape(message)}</span>" if message else "",
        )

    def _draw_approvals(self, state: PanelState) -> None:
        pending = state.pending
        count = len(pending)
        # The timeout as the server applies it: what was typed in the box shows here once the kernel has it.
        waits = f" A call waits {state.timeout:g} s for your answer." if state.policy in ("ask", "client") else ""
        title = (
            f"<b style='color:#9a6700'>{count} call{'s' if count != 1 else ''} waiting for your approval</b>"
            if count
            else f"<span style='font-size:12px;color:#57606a'>No calls waiting for approval.{waits}</span>"
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
            self._set_if_changed(row.children[0], value=self._approval_text(request, request.seconds_left))
        children = tuple(self._approval_rows[i] for i in wanted)
        if self._approvals.children != children:
            self._approvals.children = children

    @staticmethod
    def _approval_text(request: PendingApproval, left: float) -> str:
        return (
            f"<div style='font-size:12px'><b>{html.escape(request.client)}</b> wants to call "
            f"<code>{html.escape(request.tool)}</code> <span style='color:#57606a'>(asked {clock(request.created)}, "
            f"denied in {left:.0f} s without an answer)</span>"
            f"<pre style='margin:2px 0;max-height:160px;overflow:auto;font-size:11px'>"
            f"{html.escape(arguments_text(request.arguments))}</pre></div>"
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

    def _draw_tables(self, state: PanelState) -> None:
        calls = [
            [
                clock(c.time),
                html.escape(c.client[:24]),
                c.kind,
                f"<code>{html.escape(c.name[:48])}</code>",
                f"{c.duration_ms:.1f} ms",
                f"<span style='color:{OUTCOME_COLORS.get(c.outcome, '#000')}'"
                f" title='{html.escape(c.error or '', quote=True)}'>{c.outcome}</span>",
            ]
            for c in reversed(state.calls)
        ]
        self._set_if_changed(
            self._calls,
            value=html_table(["time", "client", "kind", "name", "duration", "outcome"], calls, "No calls yet."),
        )
        clients = [
            [
                html.escape(c.name),
                html.escape(c.version or ""),
                html.escape(c.protocol_version),
                str(c.requests),
                clock(c.last_seen),
            ]
            for c in state.clients
        ]
        self._set_if_changed(
            self._clients,
            value=html_table(["client", "version", "protocol", "requests", "last seen"], clients, "No client yet."),
        )

    def _draw_toggles(self, state: PanelState) -> None:
        served = state.served
        tool_rows: list[tuple[tuple[str, str], str, bool, bool]] = []
        for name in state.builtin:
            tool_rows.append((("builtin", name), f"{name} (built-in)", True, True))
        hidden = " — hidden in read-only mode" if state.mode == "read-only" else ""
        for name, spec in sorted(state.user_tools.items()):
            flags = ", ".join(
                f for f, on in (("needs approval", spec.requires_approval), ("read-only", spec.read_only)) if on
            )
            label = name + (f" ({flags})" if flags else "") + (hidden if spec.enabled and name not in served else "")
            tool_rows.append((("tools", name), label, spec.enabled, False))
        resource_rows = [(("objects", n), f"nbmcp://objects/{n}", on, False) for n, on in sorted(state.objects.items())]
        resource_rows += [(("resources", uri), uri, on, False) for uri, on in sorted(state.resources.items())]
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


def open_panels() -> list[Panel]:
    """The panels whose views are still open."""
    return hub.open_panels()


def current_panel() -> Panel | None:
    """The most recently shown panel that is still open, or None."""
    panels = open_panels()
    return max(panels, key=lambda p: p.created) if panels else None


def show_panel() -> Panel:
    """The panel (shown again if one is open: every view shares one model, so they stay consistent)."""
    return current_panel() or Panel()
