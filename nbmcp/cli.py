"""``nbmcp`` / ``jupyter nbmcp``: serve | bridge | list | config | demo."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exceptions import NbMCPError
from .transport import TRANSPORTS

__all__ = ["build_parser", "main"]

CLIENTS = ("claude", "vscode", "cursor", "generic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbmcp",
        description="Connect Jupyter kernels to AI assistants through the Model Context Protocol.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="an MCP server that runs code in a Jupyter kernel",
        description=(
            "An MCP server that starts a Jupyter kernel (or attaches to one) and lets an assistant run code, "
            "see outputs, inspect variables, interrupt and restart it. Every execution is recorded in a "
            "session notebook."
        ),
    )
    serve.add_argument(
        "--transport",
        choices=tuple(TRANSPORTS),
        default="stdio",
        help="; ".join(f"{name}: {transport.help}" for name, transport in TRANSPORTS.items()) + " (default: stdio)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="HTTP: port (default: a free one)")
    serve.add_argument("--kernel-name", default="python3", help="kernelspec to start (default python3)")
    serve.add_argument("--root", type=Path, default=None, help="working dir of the kernel and notebook root")
    serve.add_argument(
        "--existing",
        nargs="?",
        const=True,
        default=None,
        metavar="CONNECTION_FILE",
        help="attach to a running kernel (default: the newest in the Jupyter runtime dir that answers); with "
        "--server-url: a kernel id on that server (default: the most recently active)",
    )
    serve.add_argument("--server-url", help="use a kernel behind this Jupyter Server (REST + WebSocket API)")
    serve.add_argument(
        "--server-token",
        help="the Jupyter Server's token (default: $JUPYTER_TOKEN; prefer the variable, set in the client "
        "config's \"env\" block: clients do not pass on your shell's environment)",
    )
    serve.add_argument(
        "--kernel-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --server-url: an environment variable for kernels nbmcp starts there (repeatable; Kernel and "
        "Enterprise Gateway pass on KERNEL_* names; KERNEL_USERNAME defaults to the Hub user or your user name)",
    )
    serve.add_argument("--notebook", type=Path, help="session notebook (default nbmcp-session-<time>.ipynb)")
    serve.add_argument("--no-record", action="store_true", help="do not record executions in a notebook")
    serve.add_argument("--timeout", type=float, default=60.0, help="default execute timeout, seconds (60)")
    serve.add_argument("--output-budget", type=int, default=20_000, help="characters of text per result")
    serve.add_argument(
        "--record-output-limit",
        type=int,
        default=1_000_000,
        help="characters kept of each output (its head and tail) in memory, in the session notebook and at "
        "nbmcp://outputs/{id}",
    )
    serve.add_argument("--image-max-px", type=int, default=1568, help="long side of returned images")
    serve.add_argument("--read-only", action="store_true", help="serve inspection tools only, no execution")
    serve.add_argument("--query-timeout", type=float, default=30.0, help="seconds a `query` may run (30)")
    serve.add_argument(
        "--task-grace",
        type=float,
        default=5.0,  # nbmcp.tasks.TASK_GRACE (not imported: the CLI stays light)
        help="seconds a call of a client with the tasks extension may take before it becomes a task the client "
        "polls (5; 0: at once)",
    )
    serve.add_argument(
        "--query-max-spill-bytes",
        type=int,
        default=1024**3,
        help="bytes of disk one `query` may spill to beyond its memory limit, in a temporary directory removed "
        "afterwards (1 GiB); 0: no spilling",
    )
    serve.add_argument(
        "--shared",
        action="store_true",
        help="HTTP: all clients share one kernel (default: a kernel per session, and per URL /k/NAME/mcp)",
    )
    serve.add_argument(
        "--max-kernels", type=int, default=10, help="HTTP: at most this many client kernels at once (default 10)"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="HTTP: shut down a client's kernel after this many seconds without a call (default 600)",
    )

    bridge = sub.add_parser(
        "bridge",
        help="stdio MCP server forwarding to an in-kernel nbmcp server",
        description="For clients that only launch stdio commands: forwards to a kernel's nbmcp HTTP server "
        "found through its connection file (the newest, or --kernel-id), or to --url.",
    )
    target = bridge.add_mutually_exclusive_group()
    target.add_argument("--kernel-id", help="the kernel's id (a prefix is enough)")
    target.add_argument("--url", help="an MCP endpoint URL (token from $NBMCP_TOKEN or --token)")
    bridge.add_argument(
        "--token",
        help="bearer token for --url; prefer $NBMCP_TOKEN: a command line is visible to other users (ps)",
    )

    lst = sub.add_parser("list", help="running nbmcp servers (tokens are not shown)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    config = sub.add_parser("config", help="print an MCP client config for `nbmcp serve`")
    config.add_argument("client", choices=CLIENTS)
    config.add_argument("--name", default="jupyter", help="server name in the config (default jupyter)")
    config.add_argument("serve_args", nargs=argparse.REMAINDER, help="extra `nbmcp serve` arguments")

    demo = sub.add_parser("demo", help="a guided demo", add_help=False)
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    from .jupyter.hub import config as hub_config

    hub_config.add_arguments(sub.add_parser("hub-config", help="print jupyterhub_config.py lines for nbmcp's OAuth"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        return 130
    except (LookupError, ValueError, OSError, NbMCPError) as exc:  # expected: one line that says what to do
        print(f"nbmcp {args.command}: {exc}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    from .serve.run import main as serve_main  # light: the MCP SDK is imported while the kernel boots

    return serve_main(
        {
            "kernel_name": args.kernel_name,
            "root": args.root,
            "existing": args.existing,
            "server_url": args.server_url,
            "server_token": args.server_token,
            "kernel_env": _kernel_env(args.kernel_env),
            "notebook": args.notebook,
            "record": not args.no_record,
            "timeout": args.timeout,
            "output_budget": args.output_budget,
            "record_output_limit": args.record_output_limit,
            "image_max_px": args.image_max_px,
            "read_only": args.read_only,
            "query_timeout": args.query_timeout,
            "task_grace": args.task_grace,
            "query_max_spill_bytes": args.query_max_spill_bytes,
            "shared": args.shared,
            "max_kernels": args.max_kernels,
            "idle_timeout": args.idle_timeout,
            "transport": args.transport,
            "host": args.host,
            "port": args.port,
        }
    )


def _kernel_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or any(c.isspace() for c in key):
            raise ValueError(f"--kernel-env {pair!r}: expected KEY=VALUE, e.g. --kernel-env KERNEL_USERNAME=alice")
        env[key] = value
    return env


def _bridge(args: argparse.Namespace) -> int:
    import anyio

    from .bridge import run_bridge

    try:
        if args.url:
            url, token = args.url, args.token or os.environ.get("NBMCP_TOKEN")
        else:
            from .discovery import find_server

            info = find_server(args.kernel_id)
            url, token = info["url"], info.get("token")
        anyio.run(run_bridge, url, token)  # an unreachable upstream raises ConnectionError with what to do
    except (LookupError, ConnectionError) as failed:
        # the client hides stderr: serve a session that answers every call with what went wrong, then exit 1
        from .serve.unavailable import run_unavailable

        return run_unavailable("bridge", failed)
    return 0


# -------------------------------------------------------------------------------------------- list


def _list(args: argparse.Namespace) -> int:
    from .discovery import list_servers

    servers = [{k: v for k, v in s.items() if k != "token"} for s in list_servers()]
    if args.json:
        print(json.dumps(servers, indent=2))
        return 0
    if not servers:
        print("no running nbmcp servers (run `%load_ext nbmcp` in a notebook)")
        return 0
    for s in servers:
        kind = s.get("kind") or "kernel"
        print(f"{s.get('url')}  {kind} {s.get('kernel_id') or ''}  pid {s.get('pid')}  ({s['connection_file']})")
    return 0


# ------------------------------------------------------------------------------------------ config


def serve_command() -> list[str]:
    """How a client should launch ``nbmcp serve``: by absolute path, because a client (Claude Desktop, an IDE)
    does not run in the shell that activated this environment, so ``nbmcp`` is not on its PATH. The
    installed script when there is one, else this interpreter with ``-m nbmcp``."""
    exe = Path(sys.executable).with_name("nbmcp")
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe), "serve"]
    return [sys.executable, "-m", "nbmcp", "serve"]


# A placeholder, never the value of $JUPYTER_TOKEN: a config is pasted into files and chats.
TOKEN_PLACEHOLDER = "<your Jupyter token>"


def _needs_jupyter_token(extra: Sequence[str]) -> bool:
    """Whether ``nbmcp serve`` with these arguments reads the Jupyter Server token from the environment."""
    has_url = any(a == "--server-url" or a.startswith("--server-url=") for a in extra)
    has_token = any(a == "--server-token" or a.startswith("--server-token=") for a in extra)
    return has_url and not has_token


def _without_server_token(extra: Sequence[str]) -> tuple[list[str], str | None]:
    """``extra`` without ``--server-token VALUE``, and that value (None when absent)."""
    rest: list[str] = []
    token = None
    items = iter(extra)
    for arg in items:
        if arg == "--server-token":
            token = next(items, None)
            if token is None:
                raise ValueError("--server-token needs a value (or leave it out: the config gets an env block)")
        elif arg.startswith("--server-token="):
            token = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, token


def client_config(client: str, name: str = "jupyter", extra: Sequence[str] = ()) -> dict[str, Any]:
    """An MCP client config entry that launches ``nbmcp serve`` over stdio.

    With ``--server-url`` the entry has an ``env`` block for ``JUPYTER_TOKEN`` (a placeholder, or the value of
    a ``--server-token`` given here, moved out of the command line): a client starts servers with its own
    environment, not the shell's, so an exported token is not seen.
    """
    extra, token = _without_server_token(extra)
    command, *args = [*serve_command(), *extra]
    entry: dict[str, Any] = {"command": command, "args": args}
    if token is not None:
        entry["env"] = {"JUPYTER_TOKEN": token}  # not in args: a command line is visible to other users (ps)
    elif _needs_jupyter_token(extra):
        entry["env"] = {"JUPYTER_TOKEN": TOKEN_PLACEHOLDER}
    if client == "vscode":
        return {"servers": {name: {"type": "stdio", **entry}}}
    if client in ("claude", "cursor", "generic"):
        return {"mcpServers": {name: entry}}
    raise ValueError(f"unknown client {client!r}; one of {', '.join(CLIENTS)}")


_CONFIG_WHERE = {
    "claude": "Claude Desktop: claude_desktop_config.json; Claude Code: `claude mcp add-json {name} '<entry>'`",
    "vscode": "VS Code: .vscode/mcp.json in the workspace",
    "cursor": "Cursor: ~/.cursor/mcp.json (or .cursor/mcp.json in the project)",
    "generic": "any client that launches stdio MCP servers",
}


def _config_options(name: str, after_client: Sequence[str]) -> tuple[str, list[str]]:
    """``config``'s own ``--name`` wherever it stands before a ``--`` (argparse's REMAINDER takes everything after
    the client name, options included), and the ``nbmcp serve`` arguments: the rest, ``--`` dropped."""
    extra: list[str] = []
    items = iter(after_client)
    for arg in items:
        if arg == "--":
            extra += [a for a in items if a != "--"]
        elif arg == "--name":
            name = next(items, "")
            if not name or name.startswith("-"):
                raise SystemExit("nbmcp config: --name needs a server name, e.g. `nbmcp config claude --name lab`")
        elif arg.startswith("--name="):
            name = arg.split("=", 1)[1]
        else:
            extra.append(arg)
    return name, extra


def _config(args: argparse.Namespace) -> int:
    args.name, extra = _config_options(args.name, args.serve_args)
    print(json.dumps(client_config(args.client, args.name, extra), indent=2))
    print(f"# {_CONFIG_WHERE[args.client].format(name=args.name)}", file=sys.stderr)
    hub = next((m for a in extra if (m := re.search(r"/user/([^/]+)/?", a))), None)
    which = f"a JupyterHub API token with the scope access:servers!user={hub[1]}" if hub else "the server's token"
    if _needs_jupyter_token(extra):
        print(
            f'# replace "{TOKEN_PLACEHOLDER}" with {which}: the client starts nbmcp with its '
            "own environment, not your shell's, so an exported $JUPYTER_TOKEN does not reach it",
            file=sys.stderr,
        )
    elif _without_server_token(extra)[1] is not None:
        print(
            "# --server-token went into the env block (JUPYTER_TOKEN), not the command line, which other users "
            "can see (ps); keep this file private",
            file=sys.stderr,
        )
    return 0


# -------------------------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from . import demo  # imported only when asked for

    sys.argv = ["nbmcp demo", *args.demo_args]
    result = demo.main()
    return int(result or 0)


def _hub_config(args: argparse.Namespace) -> int:
    from .jupyter.hub.config import run

    return run(args)


_COMMANDS = {"serve": _serve, "bridge": _bridge, "list": _list, "config": _config, "demo": _demo}
_COMMANDS["hub-config"] = _hub_config


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
