"""Running ``nbmcp serve``: over stdio or streamable HTTP, until the client goes or a signal comes; then
every kernel nbmcp started is shut down.

:func:`main` is the ``nbmcp serve`` command. Start-up time matters there (a client waits for it): the
kernel process is launched first and boots while the MCP SDK is imported, so this module imports the
SDK-side modules (:mod:`.provider`, :mod:`.tools`) only inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..transport import TRANSPORTS
from .kernel.session import KernelSession

if TYPE_CHECKING:
    from ..transport import Endpoint
    from .provider import KernelProvider, ServeOptions

__all__ = ["RUNNERS", "main", "run_http", "run_stdio", "serve"]


def main(settings: dict[str, Any]) -> int:
    """``nbmcp serve``: ``settings`` are :class:`~nbmcp.serve.provider.ServeOptions` fields (``root``
    defaults to the working directory).

    When it cannot start (a setting that cannot work, no kernel to attach to), it raises
    :class:`~nbmcp.serve.unavailable.StartupFailed` over HTTP; over stdio, whose client hides stderr, it
    serves a session whose every answer says what went wrong (:mod:`.unavailable`) and returns 1 when the
    client leaves."""
    from .unavailable import StartupFailed, run_unavailable

    # an application may configure logging: warnings to stderr (stdout is the MCP channel on stdio)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="nbmcp: %(levelname)s %(message)s")
    try:
        settings = _checked(dict(settings))
        _skip_slow_imports()
        asyncio.run(_launch_and_serve(settings))
    except StartupFailed as failed:
        transport = TRANSPORTS.get(settings.get("transport", "stdio"))
        if transport is None or transport.stderr_seen:
            raise
        return run_unavailable("serve", failed)
    return 0


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` completed (token from the environment, absolute paths); ``StartupFailed`` for one that
    cannot work."""
    from .unavailable import StartupFailed

    if settings.get("server_url") and settings.get("server_token") is None:
        settings["server_token"] = os.environ.get("JUPYTER_TOKEN") or os.environ.get("JPY_API_TOKEN")
    problem = None
    if settings.get("transport", "stdio") not in TRANSPORTS:
        problem = f"--transport must be one of {', '.join(TRANSPORTS)}, not {settings['transport']!r}"
    elif settings.get("timeout", 60.0) <= 0:
        problem = "--timeout must be positive"
    elif settings.get("output_budget", 20_000) < 100:
        problem = "--output-budget must be at least 100 characters"
    elif settings.get("max_kernels", 1) < 1:
        problem = "--max-kernels must be at least 1"
    elif not 0 < settings.get("idle_timeout", 1.0) < float("inf"):
        problem = "--idle-timeout must be a positive number of seconds"
    root = Path(settings.get("root") or Path.cwd()).resolve()
    if problem is None and not root.is_dir():
        problem = f"--root {root} is not a directory"
    if problem is not None:
        raise StartupFailed(problem)
    settings["root"] = root
    if settings.get("notebook") is not None:
        settings["notebook"] = Path(settings["notebook"]).resolve()
    return settings


async def _launch_and_serve(settings: dict[str, Any]) -> None:
    from ..exceptions import NbMCPError
    from .unavailable import StartupFailed

    launched = None
    try:
        local = not settings.get("server_url")
        if settings.get("existing") is True and local:
            settings["existing"] = await _choose_connection_file()
        shared = TRANSPORTS[settings.get("transport", "stdio")].one_client or settings.get("shared")
        if local and settings.get("existing") is not None:
            # attaching takes moments, and a kernel that is not there is best said before serving (stdio: in
            # the handshake, see main)
            launched = await KernelSession.attach(settings["existing"])
        elif local and shared:
            # start the kernel process first: it boots while the MCP SDK and friends are imported
            launched = await KernelSession.launch(settings.get("kernel_name", "python3"), cwd=settings["root"])
        from .provider import ServeOptions

        options = ServeOptions(**settings)
    except BaseException as error:  # the kernel we started goes on every way out; then the error goes on
        if launched is not None:
            with anyio.CancelScope(shield=True):
                await launched.shutdown()
        if isinstance(error, (LookupError, ValueError, OSError, NbMCPError)):
            raise StartupFailed(str(error)) from error
        raise
    await serve(options, launched=launched)


async def _choose_connection_file() -> str:
    """``--existing`` with no file: the newest kernel that answers, named on stderr (the client's log), so
    the human can tell which of their kernels the assistant works in."""
    from .kernel.connect import newest_live_connection_file

    path, skipped = await asyncio.to_thread(newest_live_connection_file)
    note = f" (skipped {skipped} newer file{'s' if skipped != 1 else ''} of kernels that did not answer)"
    print(f"nbmcp serve: attaching to the kernel of {path}{note if skipped else ''}", file=sys.stderr, flush=True)
    return path


def _skip_slow_imports() -> None:
    """Start-up time: ``jsonschema`` (via nbformat) imports ``rfc3987_syntax`` when it is installed, which
    builds a Lark grammar at import -- about a second here -- only to check the ``iri`` string format,
    which no notebook schema uses. In the ``nbmcp serve`` process (an application, not the library) we
    tell Python it is absent; jsonschema treats it as an optional dependency."""
    if "rfc3987_syntax" not in sys.modules and os.environ.get("NBMCP_KEEP_RFC3987") is None:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]


async def serve(options: ServeOptions, *, launched: KernelSession | None = None) -> None:
    """Run ``nbmcp serve`` until stdin closes (stdio) or a signal arrives; ``launched``: the shared kernel,
    already started with :meth:`KernelSession.launch` (so it boots while the server is being set up), or
    attached with :meth:`KernelSession.attach`."""
    await RUNNERS[options.transport](options, launched=launched)


async def run_stdio(options: ServeOptions, *, launched: KernelSession | None = None) -> None:
    """Serve over stdin/stdout until stdin closes or a signal arrives; then shut our kernels down."""
    from ..sdk import serve_streams
    from ..transport.stdio import bounded_stdio_server
    from .provider import KernelProvider
    from .tools import build_server

    provider = KernelProvider(options)
    provider.start_shared(launched)  # the kernel boots while the client connects
    server = build_server(options, provider)
    remove = _install_signal_handlers(provider)
    try:
        async with bounded_stdio_server() as (read_stream, write_stream):  # one message <= 4 MiB, as over HTTP
            await serve_streams(server.mcp, read_stream, write_stream)
    finally:
        remove()
        with anyio.CancelScope(shield=True):
            await provider.close_all()


async def run_http(options: ServeOptions, *, launched: KernelSession | None = None) -> None:
    """Serve streamable HTTP on ``options.host:options.port`` behind the bearer token and Host/Origin
    checks until a signal arrives; each client session gets its own kernel unless ``shared``. Once it
    listens, the URL goes to stderr and, with the token, into a connection file (removed on every way out,
    a signal too: the process then dies of it without unwinding)."""
    from ..transport import open_endpoint
    from .provider import KernelPaths, KernelProvider
    from .tools import build_server

    token = options.token or os.environ.get("NBMCP_TOKEN") or secrets.token_urlsafe(32)
    provider = KernelProvider(options)
    if not provider.per_session:
        provider.start_shared(launched)
    elif launched is not None:
        await launched.shutdown()
    server = build_server(options, provider)
    mcp_app = server.mcp.streamable_http_app(host=options.host, session_idle_timeout=options.idle_timeout)
    try:
        endpoint = open_endpoint(KernelPaths(mcp_app), host=options.host, port=options.port, token=token)
    except BaseException:  # a port that cannot be had: the shared kernel goes too, then the error
        with anyio.CancelScope(shield=True):
            await provider.close_all()
        raise
    started = asyncio.Event()
    remove = _install_signal_handlers(provider, endpoint.unpublish)
    serving = asyncio.ensure_future(endpoint.serve(on_started=started.set))
    listening = asyncio.ensure_future(started.wait())
    try:
        await asyncio.wait([listening, serving], return_when=asyncio.FIRST_COMPLETED)
        if started.is_set():
            _announce(options, endpoint)
        await serving
    finally:
        remove()
        listening.cancel()
        with anyio.CancelScope(shield=True):
            serving.cancel()  # a graceful stop, bounded (Endpoint.serve)
            await asyncio.wait([serving])  # its outcome, if not a cancellation, was raised above
            await provider.close_all()
            endpoint.close()


def _announce(options: ServeOptions, endpoint: Endpoint) -> None:
    """The URL on stderr (the client's log) and, with the token, in the connection file."""
    from .provider import named_url

    per_client = not options.shared and not options.attaching
    # per client, the URL shown first names a kernel of its own: it works in both protocol eras (a
    # sessionless client is refused on the bare /mcp, which cannot tell it from the others) and ends in
    # /mcp, which clients that append /mcp to other URLs (fast-agent) leave as it is
    name = secrets.token_hex(4)
    url = endpoint.url
    first = named_url(url.removesuffix("/mcp"), name) if per_client else url
    path = endpoint.publish(f"serve-{os.getpid()}", client_url=first, kind="serve", kernel_id=None)
    print(f"nbmcp serve: {first}", file=sys.stderr)
    print(f"  bearer token: {str(endpoint.token)[:4]}… (full token in {path})", file=sys.stderr, flush=True)
    if per_client:
        print(
            f"  that URL is one client's kernel: give each other client a name of its own in place of {name} "
            f"(the same name reaches the same kernel); at {url} each handshake-era session gets a kernel of its "
            f"own. At most {options.max_kernels}, shut down after {options.idle_timeout:g} s unused",
            file=sys.stderr,
            flush=True,
        )


RUNNERS: dict[str, Callable[..., Awaitable[None]]] = {"stdio": run_stdio, "http": run_http}
"""How ``nbmcp serve`` runs each transport of :data:`nbmcp.transport.TRANSPORTS` (a test keeps them in step)."""


def _install_signal_handlers(provider: KernelProvider, on_exit: Callable[[], None] | None = None) -> Callable[[], None]:
    """SIGTERM/SIGINT/SIGHUP: call ``on_exit``, shut our kernels down (bounded), then die of the same signal.

    Cancelling the serving task is not enough: the SDK's stdio transport reads stdin on a worker thread
    that cannot be cancelled, so the process would linger until stdin closes. Dying of the signal skips
    every ``finally``, hence ``on_exit``.
    """
    loop = asyncio.get_running_loop()
    installed = []
    terminating: list[asyncio.Task[None]] = []

    async def terminate(signum: int) -> None:
        if on_exit is not None:  # first: a kernel slow to shut down must not keep the token file around
            with contextlib.suppress(Exception):
                on_exit()
        try:
            await asyncio.wait_for(provider.close_all(), 15)
        except Exception:  # slow or failing: we die of the signal all the same
            logging.getLogger(__name__).warning("could not shut the kernels down", exc_info=True)
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
