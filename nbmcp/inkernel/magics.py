"""``%mcp``: one line magic over the Python API.

Every subcommand is a thin layer over a public function or snapshot; bad input raises ``UsageError`` with
what to type instead.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from ..content.summary import summary_line
from . import lifecycle
from .oversight.approvals import pending_approvals
from .oversight.panel_state import abandoned_note
from .registry import Registry, default_registry
from .shell import banner, start_in_shell
from .views.objects import OBJECT_TEMPLATES, OBJECTS_URI

USAGE = """\
%mcp                      status: URL, clients, tools, resources
%mcp tools                the tools served
%mcp expose NAME [--as ALIAS]
%mcp config [claude|claude-code|vscode|cursor|generic]
%mcp token [--rotate]
%mcp log [N]              the last N calls
%mcp panel                the live panel (clients, calls, approvals)
%mcp mode read-only|tools|execute
%mcp allow-execute        same as `%mcp mode execute`
%mcp approve all|ask|none|client
%mcp stop                 stop serving (a later start keeps the URL, token and mode)
%mcp start [--new-port]   start again (--new-port: a new free port)
%mcp help                 this list"""


# More exposed objects than this are counted, not listed, in the status line.
LISTED_OBJECTS = 5


def readable_resources(registry: Registry) -> str:
    """What a client can read, in one line: the index, each object's URI (or how many there are), and the
    user's resources and templates."""
    registered = registry.snapshot()
    objects = sorted(f"{OBJECTS_URI}/{obj.name}" for obj in registered.objects.values() if obj.enabled)
    user = sorted(spec.uri for spec in registered.resources.values() if spec.enabled)
    parts = [f"{OBJECTS_URI} (index)"]
    if len(objects) > LISTED_OBJECTS:
        parts.append(f"{len(objects)} objects under {OBJECT_TEMPLATES['summary']}")
    else:
        parts += objects
    if objects:
        parts.append(f"pages {OBJECT_TEMPLATES['rows']}")
    return ", ".join(parts + user)


@magics_class
class NbMCPMagics(Magics):
    """The ``%mcp`` line magic; ``%load_ext nbmcp`` registers it."""

    @line_magic
    def mcp(self, line: str) -> Any:
        """Control the in-kernel MCP server. `%mcp help` lists the subcommands."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{exc}\n{USAGE}") from None
        command, args = (words[0], words[1:]) if words else ("status", [])
        handler = getattr(self, "_cmd_" + command.replace("-", "_"), None)
        if handler is None:
            raise UsageError(f"unknown %mcp subcommand {command!r}; try:\n{USAGE}")
        return handler(args)

    # -- helpers -------------------------------------------------------------------------------

    def _server(self) -> lifecycle.InKernelServer:
        server = lifecycle.current_server()
        if server is None:
            raise UsageError("the MCP server is not running: `%mcp start` starts it")
        return server

    @staticmethod
    def _no_args(args: list[str], command: str) -> None:
        if args:
            raise UsageError(f"%mcp {command} takes no arguments, got {' '.join(args)!r}")

    # -- subcommands ---------------------------------------------------------------------------

    def _cmd_help(self, args: list[str]) -> None:
        print(USAGE)

    def _cmd_status(self, args: list[str]) -> None:
        self._no_args(args, "status")
        server = lifecycle.current_server()
        if server is None:
            print("nbmcp: not running (`%mcp start`)")
            return
        served = server.mcp_server.snapshot()
        registered = default_registry.snapshot()
        now = time.time()
        clients = [c for c in served.clients if now - c.last_seen < 3600]
        print(f"nbmcp: serving {server.info.url} (mode: {served.mode})")
        print(f"  clients:   {', '.join(sorted({c.name for c in clients})) or '(none yet)'}")
        print(f"  tools:     {', '.join(sorted(served.served_tools)) or '(none)'}")
        print(f"  objects:   {', '.join(sorted(registered.objects)) or '(none: nbmcp.expose(df, name))'}")
        print(f"  prompts:   {', '.join(sorted(registered.prompts)) or '(none)'}")
        print(f"  resources: {readable_resources(server.mcp_server.registry)}")
        pool = served.tool_pool
        stuck = abandoned_note(pool.abandoned, pool.max_abandoned) if pool is not None else ""
        if stuck:
            print(f"  warning:   {stuck}")

    def _cmd_tools(self, args: list[str]) -> None:
        self._no_args(args, "tools")
        served = self._server().mcp_server.snapshot()
        for name, spec in sorted(served.served_tools.items()):
            origin = "built-in" if spec.builtin else "user"
            print(f"{name:24} {origin:8} {summary_line(spec.description, 80)}")
        disabled = [n for n, s in default_registry.snapshot().tools.items() if not s.enabled]
        if disabled:
            print(f"(disabled: {', '.join(sorted(disabled))})")

    def _cmd_expose(self, args: list[str]) -> None:
        if len(args) == 1:
            name, alias = args[0], None
        elif len(args) == 3 and args[1] == "--as":
            name, alias = args[0], args[2]
        else:
            raise UsageError("usage: %mcp expose NAME [--as ALIAS]")
        namespace = self.shell.user_ns if self.shell is not None else {}
        try:
            default_registry.expose_variable(name, namespace, name=alias)
        except (NameError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        print(f"nbmcp: exposed {name!r} as nbmcp://objects/{alias or name}")

    def _cmd_config(self, args: list[str]) -> None:
        if len(args) > 1:
            raise UsageError("usage: %mcp config [claude|claude-code|vscode|cursor|generic]")
        client = args[0] if args else "generic"
        try:
            config = self._server().info.client_config(client)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(config, indent=2))

    def _cmd_token(self, args: list[str]) -> None:
        server = self._server()
        if args == ["--rotate"]:
            server.rotate_token()
            print(f"nbmcp: new token written to {server.info.connection_file}; reconnect your clients")
        elif not args:
            print(server.info.token)
        else:
            raise UsageError("usage: %mcp token [--rotate]")

    def _cmd_log(self, args: list[str]) -> None:
        try:
            count = int(args[0]) if args else 20
        except ValueError:
            raise UsageError(f"usage: %mcp log [N] (N a number, not {args[0]!r})") from None
        if len(args) > 1 or count < 1:
            raise UsageError("usage: %mcp log [N] with N >= 1")
        server = self._server()
        calls = server.mcp_server.snapshot().calls[-count:]
        audit = server.audit
        if not calls:
            print("nbmcp: no calls yet" + (f" (audit log: {audit.path})" if audit is not None else ""))
            return
        print(f"{'time':8}  {'client':16} {'kind':8} {'name':28} {'ms':>8}  outcome")
        for call in calls:
            stamp = time.strftime("%H:%M:%S", time.localtime(call.time))
            name = call.name[:28]
            print(f"{stamp:8}  {call.client[:16]:16} {call.kind:8} {name:28} {call.duration_ms:8.1f}  {call.outcome}")
        if audit is not None:
            print(f"(all calls: {audit.path})")

    def _cmd_panel(self, args: list[str]) -> Any:
        self._no_args(args, "panel")
        from .oversight.panel import show_panel  # ipywidgets loads only when a panel is asked for

        return show_panel()

    def _cmd_mode(self, args: list[str]) -> None:
        if not args:
            print(f"nbmcp: mode is {self._server().mcp_server.mode} (%mcp mode read-only|tools|execute)")
            return
        if len(args) != 1 or args[0] not in ("read-only", "tools", "execute"):
            raise UsageError("usage: %mcp mode read-only|tools|execute")
        try:
            self._server().mcp_server.set_mode(args[0])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"nbmcp: mode is now {args[0]}")

    def _cmd_allow_execute(self, args: list[str]) -> None:
        self._no_args(args, "allow-execute")
        self._cmd_mode(["execute"])

    def _cmd_approve(self, args: list[str]) -> None:
        if not args:
            mcp = self._server().mcp_server
            waiting = ", ".join(f"{p['tool']} (from {p['client']})" for p in pending_approvals()) or "none"
            print(f"nbmcp: approval policy {mcp.approval_policy!r}, timeout {mcp.approval_timeout:g} s")
            print(f"  waiting for approval: {waiting}")
            return
        if len(args) != 1 or args[0] not in ("all", "ask", "none", "client"):
            raise UsageError(
                "usage: %mcp approve all|ask|none|client  (client: ask the assistant's user when no panel is open)"
            )
        self._server().mcp_server.approval_policy = args[0]
        print(f"nbmcp: approval policy is now {args[0]!r}")

    def _cmd_start(self, args: list[str]) -> None:
        if args not in ([], ["--new-port"]):
            raise UsageError(f"usage: %mcp start [--new-port], not %mcp start {' '.join(args)}")
        running = lifecycle.running_info()
        if running is not None:
            hint = " (`%mcp stop` first to move it to a new port)" if args else ""
            print(f"nbmcp: already serving {running.url}{hint}")
            return
        # port=0 asks for a free port; no port keeps the one this kernel had (or the configured one).
        print(banner(start_in_shell(self.shell, port=0) if args else start_in_shell(self.shell)))

    def _cmd_stop(self, args: list[str]) -> None:
        self._no_args(args, "stop")
        if lifecycle.running_info() is None:
            print("nbmcp: not running")
            return
        lifecycle.stop_server()
        print("nbmcp: MCP server stopped (`%mcp start` starts it again)")
