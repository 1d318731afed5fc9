"""Authenticated Tornado handlers that forward MCP requests to loopback ASGI servers, streaming the answers.

Jupyter Server is Tornado; MCP's streamable HTTP transport is the SDK's ASGI app. These handlers do not
speak MCP: after Jupyter's own auth (token, cookie, JupyterHub OAuth) and an ``execute`` permission on
``kernels``, they pass the request to the SDK app with that app's bearer token and copy the response back
chunk by chunk, flushing each one, so server-sent events (progress, notifications) reach the client as
they are produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.log import log_request as jupyter_log_request
from jupyter_server.prometheus.log_functions import prometheus_log_method
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from tornado import web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from ..exceptions import UpstreamError
from .hub.protect import bearer_token, needed_scope, read_only_tools, refuse, sign_in
from .hub.resource import TokenRefused
from .hub.scopes import EXECUTE, READ
from .upstream import UpstreamResponse

__all__ = [
    "DROP_REQUEST_HEADERS",
    "DROP_RESPONSE_HEADERS",
    "ForwardingHandler",
    "KernelMCPHandler",
    "ServerMCPHandler",
    "UpstreamError",
]

# Not passed upstream: hop-by-hop headers, Jupyter's credentials (replaced by the upstream's token), the
# browser's Origin/Referer (Jupyter checked them; the upstream only sees this server as its client).
DROP_REQUEST_HEADERS = {
    "host",
    "authorization",
    "cookie",
    "origin",
    "referer",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "accept-encoding",
    "x-xsrftoken",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
}
DROP_RESPONSE_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "server",
    "date",
    "www-authenticate",
}


def shows_debug(logger: logging.Logger) -> bool:
    """Whether a debug record from ``logger`` would reach a handler that emits it.

    ``isEnabledFor`` is not enough: traitlets sets Jupyter's loggers to DEBUG and applies ``log_level`` on
    their handlers, so every debug record is built and then dropped there.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return False
    current: logging.Logger | None = logger
    handled = False
    while current is not None:
        for handler in current.handlers:
            handled = True
            if handler.level <= logging.DEBUG:
                return True
        if not current.propagate:
            break
        current = current.parent
    # With no handler at all, logging's last resort handler (WARNING) decides.
    return not handled and logging.lastResort is not None and logging.lastResort.level <= logging.DEBUG


@web.stream_request_body
class ForwardingHandler(APIHandler):
    """Forward GET/POST/DELETE to ``upstream()`` and stream the response back as it is produced.

    The request body is read here, not by Tornado: Jupyter lets Tornado buffer bodies of up to 512 MB, while
    the SDK app behind refuses anything over ``max_body_size`` (4 MiB). A larger declared body is refused
    before a byte of it is read, and a chunked one as soon as it passes the limit.
    """

    SUPPORTED_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
    auth_resource = "kernels"
    max_body_size = DEFAULT_MAX_REQUEST_BODY_SIZE

    def initialize(self, nbmcp: Any) -> None:
        self.nbmcp = nbmcp
        self._pump: asyncio.Future[None] | None = None
        self._body = bytearray()
        # an nbmcp OAuth access token's grant (Verified), or why it was refused (TokenRefused)
        self.oauth_grant: Any = None

    async def prepare(self) -> None:
        resource = self.nbmcp.oauth
        token = bearer_token(self) if resource is not None else None
        # A refusal waits for the verb, after the body is read: finishing now would close the connection,
        # which a proxy (configurable-http-proxy) may already be reusing for the client's next request.
        if token and resource.looks_like_ours(token):
            # the service's tokens are checked here: Jupyter would ask the Hub, which does not know them
            self.oauth_grant = await sign_in(self, resource, token)
            if isinstance(self.oauth_grant, TokenRefused) and self.request.method != "POST":
                refuse(self, resource, self.oauth_grant)  # no body to wait for; a GET would redirect to a login
                return
        else:
            try:
                await super().prepare()
            except web.HTTPError as exc:
                if exc.status_code != 403 or self.current_user is not None:
                    raise
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body_size:
            # Finishing before the body is read makes Tornado close the connection instead of reading it.
            self._fail(413, self._too_large_message())
            return
        # For a chunked body: Tornado stops reading past this and drops the connection.
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(self.max_body_size)

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk

    def _too_large_message(self) -> str:
        return (
            f"request body too large: an MCP message may be at most {self.max_body_size // (1024 * 1024)} MiB; "
            "send large data as a file the tools can read instead"
        )

    async def upstream(self, *args: str) -> tuple[str, str, str]:
        """``(url, bearer token, description)`` of where this request goes; raise UpstreamError if nowhere."""
        raise NotImplementedError

    @web.authenticated
    async def get(self, *args: str) -> None:
        await self._authorized_forward(*args)

    @web.authenticated
    async def post(self, *args: str) -> None:
        await self._authorized_forward(*args)

    @web.authenticated
    async def delete(self, *args: str) -> None:
        await self._authorized_forward(*args)

    async def _authorized_forward(self, *args: str) -> None:
        if self.oauth_grant is None:  # (a refused one never gets here: there is no current user)
            await self._jupyter_authorized_forward(*args)
            return
        try:  # an OAuth token: its scopes say what it may do (Jupyter's authorizer knows Hub scopes only)
            self.oauth_grant.require(READ)
            if EXECUTE not in self.oauth_grant.scopes and needed_scope(bytes(self._body), await self.read_only()):
                self.oauth_grant.require(EXECUTE)
        except TokenRefused as exc:
            refuse(self, self.nbmcp.oauth, exc)
            return
        await self._forward(*args)

    @authorized("execute")
    async def _jupyter_authorized_forward(self, *args: str) -> None:
        await self._forward(*args)

    async def read_only(self) -> frozenset[str] | None:
        """Tools a read-only token may call on this route (None: none)."""
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Refused before anyone was authenticated (no token, a wrong one, another JupyterHub user's): Jupyter says
        # "Forbidden" or "'_xsrf' argument missing", which sends people hunting in the wrong place.
        if isinstance(self.oauth_grant, TokenRefused):
            refuse(self, self.nbmcp.oauth, self.oauth_grant)
            return
        if status_code == 403 and not getattr(self, "_jupyter_current_user", None):
            origin = f"{self.request.protocol}://{self.request.host}"
            message = self.nbmcp.refusal(self.request.path, "authorization" in self.request.headers, origin)
            if self.nbmcp.oauth is not None:  # RFC 6750: 401 with the challenge OAuth clients discover from
                sent = "authorization" in self.request.headers
                error = TokenRefused(message) if sent else None
                refuse(self, self.nbmcp.oauth, error, message)
                return
            self._fail(403, message)
            return
        super().write_error(status_code, **kwargs)

    def _fail(self, status: int, message: str, **details: Any) -> None:
        self.set_status(status)
        self.finish(json.dumps({"message": message, "error": message, **details}))

    async def _forward(self, *args: str) -> None:
        try:
            url, token, what = await self.upstream(*args)
        except UpstreamError as exc:
            self._fail(exc.status, str(exc), **exc.details)
            return
        headers = [(k, v) for k, v in self.request.headers.get_all() if k.lower() not in DROP_REQUEST_HEADERS]
        headers.append(("Authorization", f"Bearer {token}"))
        try:
            response = await self.nbmcp.upstreams.request(self.request.method or "GET", url, headers, bytes(self._body))
        except OSError as exc:
            reason = str(exc) or type(exc).__name__
            message = await self.failed(f"{what} at {url} is not answering ({reason}). {self.dead_hint()}".strip())
            self._fail(502, message)
            return
        content_type = response.header("content-type", "application/json")
        # Tornado leaves Nagle on while a response is written; streamed chunks must not wait for ACKs.
        with contextlib.suppress(AttributeError):
            self.request.connection.stream.set_nodelay(True)  # type: ignore[union-attr]
        try:
            self.set_status(response.status_code)
            self.clear_header("Content-Type")
            for name, value in response.headers:
                if name.lower() not in DROP_RESPONSE_HEADERS:
                    self.add_header(name, value)
            if content_type.startswith("text/event-stream"):
                self.set_header("Cache-Control", "no-cache, no-transform")
                self.set_header("X-Accel-Buffering", "no")  # nginx/JupyterHub proxies: do not buffer SSE
            self._pump = asyncio.ensure_future(self._stream(response))
            with contextlib.suppress(asyncio.CancelledError, StreamClosedError):
                await self._pump
        finally:
            await response.aclose()
        if not self._finished:
            with contextlib.suppress(StreamClosedError):
                self.finish(set_content_type=content_type)

    async def _stream(self, response: UpstreamResponse) -> None:
        """Copy the upstream body, flushing each chunk as it arrives. What has arrived together goes out in
        one write, and the last chunk with the end of the response: every write costs the client a wake-up."""
        try:
            async for chunk in response.chunks():
                self.write(chunk)
                if not response.complete:
                    await self.flush()
        except (OSError, ValueError):  # the upstream went away mid-stream: end ours too
            return

    def _log(self) -> None:
        # Tornado's documented per-handler hook for the access log. Jupyter's log function formats a line for
        # every request and then logs successes at debug level, where they are usually dropped: on this route
        # (one request per MCP message) building that line is about 5% of the proxy's CPU per call. So successes are
        # formatted only when debug logging is on; their request metrics are recorded as Jupyter records them,
        # and failures, or a log function configured in place of Jupyter's, take Jupyter's path unchanged.
        log_function = self.settings.get("log_function")
        status = self.get_status()
        if (
            (status < 300 or status == 304)
            and isinstance(log_function, functools.partial)
            and log_function.func is jupyter_log_request
            and not shows_debug(self.log)
        ):
            if log_function.keywords.get("record_prometheus_metrics", True):
                prometheus_log_method(self)
            return
        super()._log()

    def on_connection_close(self) -> None:
        # The client went away: stop reading the upstream (closing it tells the SDK app the stream ended).
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    def dead_hint(self) -> str:
        return ""

    async def failed(self, message: str) -> str:
        """The message of a failed forward, with any detail worth the extra lookups."""
        return message


class ServerMCPHandler(ForwardingHandler):
    """``{base_url}nbmcp/mcp``: the server's own MCP app (notebooks, kernels, ``serve`` tools)."""

    async def upstream(self) -> tuple[str, str, str]:  # type: ignore[override]
        url, token = self.nbmcp.app_endpoint()
        if url is None or token is None:
            raise UpstreamError(503, "the nbmcp Jupyter Server extension is starting or stopped; retry shortly")
        return url, token, "the nbmcp Jupyter Server MCP app"

    async def read_only(self) -> frozenset[str] | None:
        server = self.nbmcp.mcp_server
        return await read_only_tools(server) if server is not None else frozenset()

    def dead_hint(self) -> str:
        return "Restart the Jupyter Server."


class KernelMCPHandler(ForwardingHandler):
    """``{base_url}nbmcp/kernels/{kernel_id}/mcp``: the in-kernel server of that kernel (``%load_ext nbmcp``)."""

    async def upstream(self, kernel_id: str) -> tuple[str, str, str]:  # type: ignore[override]
        kernels = self.nbmcp.kernels
        if kernels is None:
            raise UpstreamError(503, "the nbmcp Jupyter Server extension is starting or stopped; retry shortly")
        # The hot path is two lookups: the kernel in the server's manager, its nbmcp connection file (a stat
        # while the file is unchanged).
        if kernel_id not in kernels.kernel_manager:
            self.nbmcp.kernel_servers.forget(set(kernels.kernel_manager.list_kernel_ids()))
            entries = await kernels.notebooks()
            listing = [{"kernel_id": e["kernel_id"], "notebooks": e["notebooks"]} for e in entries]
            shown = "; ".join(f"{e['kernel_id']} ({', '.join(e['notebooks']) or 'no notebook'})" for e in entries)
            raise UpstreamError(
                404,
                f"no kernel {kernel_id!r} on this Jupyter Server; running kernels: {shown or 'none'}",
                kernels=listing,
            )
        server = self.nbmcp.kernel_servers.lookup(kernel_id)
        if not server:
            where = await self._where(kernel_id)
            raise UpstreamError(
                404,
                f"kernel {kernel_id} ({where}) has no nbmcp server: run `%load_ext nbmcp` in that notebook first",
                kernel_id=kernel_id,
            )
        if not server.get("url") or not server.get("token"):
            raise UpstreamError(502, f"the nbmcp connection file of kernel {kernel_id} is incomplete")
        self._kernel_id = kernel_id
        return server["url"], server["token"], f"the nbmcp server of kernel {kernel_id}"

    async def _where(self, kernel_id: str) -> str:
        entries = await self.nbmcp.kernels.notebooks()
        paths = next((e["notebooks"] for e in entries if e["kernel_id"] == kernel_id), [])
        return ", ".join(paths) or f"kernel {kernel_id}"

    async def failed(self, message: str) -> str:
        return message.replace(
            f"kernel {self._kernel_id}", f"kernel {self._kernel_id} ({await self._where(self._kernel_id)})", 1
        )

    def dead_hint(self) -> str:
        return "Its in-kernel server has stopped: run `%mcp start` (or `%load_ext nbmcp` again) in the notebook."
