"""Connect the official MCP SDK client to an nbmcp server: in-kernel, ``nbmcp serve`` (stdio or HTTP), or the
Jupyter Server extension.

Two ways in:

- :func:`connect` returns the SDK's async ``mcp.Client`` for ``async with`` (scripts, tests, the bridge).
- :func:`session` returns a :class:`SyncClient`, already connected, whose methods are plain blocking calls, for
  notebook cells and scripts that are not async::

      import nbmcp.client

      with nbmcp.client.session(info.url, info.token) as mcp:      # HTTP: the URL and bearer token
          print(mcp.call_tool("top_regions", {"n": 2}).content[0].text)

      with nbmcp.client.session(command=["/path/to/nbmcp", "serve"]) as mcp:   # stdio, as a client launches it
          mcp.call_tool("execute", {"code": "1 + 1"})

  The SDK client runs on its own event-loop thread (an anyio blocking portal), the way an assistant runs in its
  own process: it stays connected between cells, and a call made from a cell does not depend on the kernel's
  own event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .exceptions import ClientConnectError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client.subscriptions import Subscription
    from mcp.types import (
        CallToolResult,
        GetPromptResult,
        ListPromptsResult,
        ListResourcesResult,
        ListResourceTemplatesResult,
        ListToolsResult,
        ReadResourceResult,
    )

__all__ = ["ClientConnectError", "SyncClient", "SyncSubscription", "connect", "session"]

T = TypeVar("T")

# Clients still open when the interpreter exits are closed first (atexit runs before objects are torn down):
# otherwise finalising a client's portal at shutdown waits on its event loop for ever and the process hangs.
_open_clients: weakref.WeakSet[SyncClient] = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        with contextlib.suppress(Exception):
            client.close()


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    kernel_id: str | None = None,
    mode: str = "auto",
    **client_options: Any,
) -> Any:
    """An ``mcp.Client`` (use it with ``async with``) that sends the bearer token.

    With no ``url``, the server is found through its connection file (``kernel_id`` or the newest).
    """
    if url is None:
        from .discovery import find_server

        found = find_server(kernel_id)
        url, token = found["url"], token or found["token"]
    return _http_client(url, token, mode=mode, **client_options)


def _http_client(
    url: str, token: str | None, *, on_status: Callable[[int], None] | None = None, **client_options: Any
) -> Any:
    """An ``mcp.Client`` over streamable HTTP with the bearer token; ``on_status`` hears each HTTP error status
    (the SDK reports a refused request as a bare "Server returned an error response", without the status)."""
    from mcp import Client
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    if on_status is not None:
        notify = on_status

        async def note_status(response: Any) -> None:
            if response.status_code >= 400:
                notify(response.status_code)

        http.event_hooks["response"].append(note_status)
    return Client(streamable_http_client(url, http_client=http), **client_options)


def session(
    url: str | None = None,
    token: str | None = None,
    *,
    kernel_id: str | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    errlog: IO[str] | None = None,
    mode: str = "auto",
    **client_options: Any,
) -> SyncClient:
    """Connect a blocking MCP client; use it with ``with`` (or call ``close()``), across as many cells as you like.

    Over HTTP: ``url`` and ``token`` (an in-kernel server's ``nbmcp.info()``, ``nbmcp serve --transport http``,
    or ``{server}/nbmcp/mcp`` with the Jupyter token); with neither, the in-kernel server of ``kernel_id`` (or
    the newest) is found through its connection file.

    Over stdio: ``command`` is the server's command line, e.g. ``[entry["command"], *entry["args"]]`` from the
    config ``nbmcp config generic`` prints; ``env`` is added to the small default environment an MCP client
    passes (not the whole of yours), and what the server writes to stderr goes to ``errlog`` (default: kept,
    readable as :attr:`SyncClient.server_log`).

    ``mode`` and ``client_options`` go to ``mcp.Client`` (e.g. ``mode="legacy"`` for the initialize handshake).
    Raises :class:`ClientConnectError` when the server cannot be reached or refuses the connection.
    """
    return SyncClient(
        url, token, kernel_id=kernel_id, command=command, env=env, cwd=cwd, errlog=errlog, mode=mode, **client_options
    )


class SyncClient:
    """A connected MCP client with blocking methods; made by :func:`session`.

    The methods mirror the async ``mcp.Client`` ones (same arguments, same results); :meth:`run` runs any other
    coroutine function of :attr:`client` (callbacks given to the SDK run on the client's thread, async as usual).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        kernel_id: str | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        errlog: IO[str] | None = None,
        mode: str = "auto",
        **client_options: Any,
    ) -> None:
        from anyio.from_thread import start_blocking_portal
        from mcp import Client

        self._log: IO[str] | None = None
        self._http_status: int | None = None
        if command is not None:
            if url is not None or kernel_id is not None:
                raise TypeError("session() takes a url (HTTP) or a command (stdio), not both")
            from mcp.client.stdio import StdioServerParameters, stdio_client

            program, *args = command
            self.target = " ".join(command)
            # The server's stderr needs a real file (a notebook's sys.stderr has none); keep it for server_log.
            # Open for the client's life, closed when it is collected: not a `with` block.
            self._log = errlog if errlog is not None else tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
            params = StdioServerParameters(command=program, args=args, env=dict(env or {}) or None, cwd=cwd)
            client = Client(stdio_client(params, errlog=self._log), mode=mode, **client_options)
        else:
            if url is None:
                from .discovery import find_server

                try:
                    found = find_server(kernel_id)
                except LookupError as error:
                    raise ClientConnectError(str(error)) from None
                url, token = found["url"], token or found["token"]
            self.target = url
            client = _http_client(url, token, on_status=self._note_status, mode=mode, **client_options)
        self._owns_log = errlog is None
        self._closing = contextlib.ExitStack()
        try:
            self._portal = self._closing.enter_context(start_blocking_portal(name="nbmcp-client"))
            self.client: Client = self._closing.enter_context(self._portal.wrap_async_context_manager(client))
            _open_clients.add(self)
        except BaseException as error:
            self._closing.close()
            if isinstance(error, Exception):
                raise ClientConnectError(self._explain(error)) from None
            raise

    # ------------------------------------------------------------------------------------------ lifetime

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (a stdio server exits, and shuts down the kernel it started) and stop the client's thread."""
        _open_clients.discard(self)
        self._closing.close()

    @property
    def server_log(self) -> str:
        """What a stdio server wrote to stderr so far ("" over HTTP, or when ``errlog`` was given)."""
        if self._log is None or not self._owns_log or self._log.closed:
            return ""
        # pread: the server process shares this file's offset, so reading must not move it.
        descriptor = self._log.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------------------------ calls

    def run(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run a coroutine function (e.g. ``mcp.run(mcp.client.complete, ...)``) on the client's thread; its result."""
        return self._portal.call(functools.partial(function, *args, **kwargs))

    def list_tools(self, **options: Any) -> ListToolsResult:
        return self.run(self.client.list_tools, **options)

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None, **options: Any) -> CallToolResult:
        """Call a tool; a tool's own failure comes back as ``is_error`` (not raised), as an assistant sees it."""
        return self.run(self.client.call_tool, name, arguments, **options)

    def list_resources(self, **options: Any) -> ListResourcesResult:
        return self.run(self.client.list_resources, **options)

    def list_resource_templates(self, **options: Any) -> ListResourceTemplatesResult:
        return self.run(self.client.list_resource_templates, **options)

    def read_resource(self, uri: str, **options: Any) -> ReadResourceResult:
        return self.run(self.client.read_resource, uri, **options)

    def list_prompts(self, **options: Any) -> ListPromptsResult:
        return self.run(self.client.list_prompts, **options)

    def get_prompt(self, name: str, arguments: dict[str, str] | None = None, **options: Any) -> GetPromptResult:
        return self.run(self.client.get_prompt, name, arguments, **options)

    def listen(self, **filters: Any) -> SyncSubscription:
        """Open a change-event stream (``resource_subscriptions=[uri, ...]``, ``tools_list_changed=True``, ...).

        Stays open until closed (use ``with``, or it closes with the client).
        """
        opened = self._portal.wrap_async_context_manager(self.client.listen(**filters))
        subscription = SyncSubscription(self, opened.__enter__(), opened)
        self._closing.callback(subscription.close)
        return subscription

    # ------------------------------------------------------------------------------------------ errors

    def _note_status(self, status: int) -> None:
        self._http_status = status

    def _explain(self, error: BaseException) -> str:
        """One line for a failed connection: what went wrong, and what to do about it."""
        cause = _innermost(error)
        where = self.target
        # The SDK's HTTP client is httpx2 today; match by shape so a change of HTTP library keeps the message.
        status = getattr(getattr(cause, "response", None), "status_code", None) or self._http_status
        if status == 401:
            return f"{where} refused the token (401): pass the server's token (nbmcp.info().token, the Jupyter token)"
        if status == 403:
            return f"{where} answered 403: the token or the request's Origin/Host is not allowed there"
        if status == 404:
            return f"{where} has no MCP endpoint (404): check the URL (it ends in /mcp)"
        if status is not None:
            return f"{where} answered HTTP {status}: is that an MCP server's URL?"
        if any(kind.__name__ in ("ConnectError", "ConnectTimeout") for kind in type(cause).__mro__):
            return f"nothing answers at {where}: is the server running? (`nbmcp list` shows in-kernel servers)"
        if isinstance(cause, FileNotFoundError):
            return f"cannot start {where!r}: no such program; use the absolute path `nbmcp config generic` prints"
        last_line = self.server_log.strip().splitlines()[-1:] if self._log is not None else []
        said = f"; its last words: {last_line[0]}" if last_line else ""
        return f"could not connect to {where}: {type(cause).__name__}: {cause}{said}"


class SyncSubscription:
    """Change events from :meth:`SyncClient.listen`, one at a time with :meth:`next_event`."""

    def __init__(
        self, owner: SyncClient, subscription: Subscription, opened: contextlib.AbstractContextManager
    ) -> None:
        self._owner = owner
        self._subscription = subscription
        self._opened: contextlib.AbstractContextManager | None = opened

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def next_event(self, timeout: float = 10.0) -> Any:
        """The next event (e.g. ``event.uri`` for a changed resource); ``TimeoutError`` if none within ``timeout`` s."""
        import anyio

        async def wait() -> Any:
            with anyio.fail_after(timeout):
                return await self._subscription.__anext__()

        try:
            return self._owner.run(wait)
        except TimeoutError:
            raise TimeoutError(f"no change event within {timeout} s") from None

    def close(self) -> None:
        """End the subscription (the client stays connected)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.__exit__(None, None, None)


def _innermost(error: BaseException) -> BaseException:
    """The first leaf of nested exception groups (the SDK's task groups wrap the real cause)."""
    # Duck-typed: the builtin BaseExceptionGroup is Python 3.11+, anyio's backport serves 3.10.
    inner = getattr(error, "exceptions", None)
    while inner:
        error = inner[0]
        inner = getattr(error, "exceptions", None)
    return error
