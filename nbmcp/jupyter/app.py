"""The Jupyter Server extension app: routes, the loopback MCP app, start and stop."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int

from .._version import __version__
from .hub.resource import OAuthResource
from .kernel_servers import KernelServers
from .upstream import UpstreamPool

__all__ = ["NbMCPServerExtension"]


class NbMCPServerExtension(ExtensionApp):
    """MCP for a Jupyter Server: ``{base_url}nbmcp/mcp`` and ``{base_url}nbmcp/kernels/{kernel_id}/mcp``.

    Both routes sit behind Jupyter's own auth and forward to the SDK's streamable HTTP app: the server's
    own (served by uvicorn on this server's event loop, on a private loopback port with a random token)
    or a kernel's in-kernel server (found through its connection file, with its token).
    """

    name = "nbmcp"
    description = "MCP endpoints for the kernels of this Jupyter Server"
    version = __version__
    load_other_extensions = True

    read_only = Bool(False, help="Serve only the inspection tools at nbmcp/mcp (no execute, no interrupt).").tag(
        config=True
    )
    execute_timeout = Float(60.0, help="Default seconds before an execute call interrupts the kernel.").tag(config=True)
    task_grace = Float(  # nbmcp.tasks.TASK_GRACE: imported only once the extension starts
        5.0,
        min=0,
        help="Seconds a call of a client with the tasks extension may take before it is answered as a task the "
        "client polls (0: at once).",
    ).tag(config=True)
    output_budget = Int(0, help="Characters of text per tool result (0: nbmcp's default, 20,000).").tag(config=True)
    record = Bool(
        True,
        help="Record what assistants run through nbmcp/mcp, with outputs, in '<notebook>.assistant.ipynb' "
        "beside the notebook whose kernel ran it.",
    ).tag(config=True)

    live_cells = Bool(
        True,
        help="Show what assistants run through nbmcp/mcp as cells of the notebook when it is open in JupyterLab "
        "with real-time collaboration (jupyter-collaboration); else it is recorded (see `record`).",
    ).tag(config=True)

    def initialize_settings(self) -> None:
        self.kernels: Any = None
        self.mcp_server: Any = None
        self.upstreams: UpstreamPool | None = None
        self.kernel_servers = KernelServers()  # where each kernel's in-kernel server listens
        self._serving: asyncio.Future[Any] | None = None
        self._endpoint: Any = None
        self._url: str | None = None
        self._token: str | None = None
        # on a Hub with nbmcp's OAuth service: the checks of its access tokens (None: Jupyter's auth only)
        self.oauth = OAuthResource.from_environment(self.serverapp.base_url if self.serverapp else "/", self.log)

    def initialize_handlers(self) -> None:
        from .forward import KernelMCPHandler, ServerMCPHandler

        self.handlers.extend(
            [
                (r"/nbmcp/mcp", ServerMCPHandler, {"nbmcp": self}),
                (r"/nbmcp/kernels/([^/]+)/mcp", KernelMCPHandler, {"nbmcp": self}),
            ]
        )
        if self.oauth is not None:
            from .hub.protect import ProtectedResourceMetadataHandler

            well_known = r"/nbmcp/\.well-known/oauth-protected-resource"
            self.handlers.append((well_known, ProtectedResourceMetadataHandler, {"resource": self.oauth}))

    def refusal(self, path: str, sent_credentials: bool, origin: str = "") -> str:
        """Why an unauthenticated request to ``path`` was refused, and what to send instead; ``origin``: the
        scheme and host the request came to (the Hub's public origin, as the person's client sees it)."""
        hub_user = os.environ.get("JUPYTERHUB_USER")  # set by JupyterHub in single-user servers
        if hub_user:
            # the Hub's pages as people open them: the Hub says so when its public_url is set, else the origin
            # this request came to (the proxy keeps the Host header; the single-user server trusts X-Forwarded-Proto)
            hub_pages = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL") or (
                f"{origin}{os.environ.get('JUPYTERHUB_BASE_URL', '/')}hub/"
            )
            needs = (
                f"{path} is {hub_user}'s JupyterHub server: it needs a JupyterHub API token of {hub_user} (or of a "
                f"user or service allowed to access it) with the scope access:servers!user={hub_user}, sent as "
                f"'Authorization: Bearer <token>'. Create one at {hub_pages.rstrip('/')}/token"
            )
            if self.oauth is not None:
                needs += f"; or sign in with OAuth at {self.oauth.issuer} (MCP clients find it from this answer)"
            if sent_credentials:
                return "the Hub did not accept this token (invalid, expired, or another user's): " + needs
            return "no token was sent: " + needs
        if sent_credentials:
            return f"this Jupyter Server refused the token sent to {path}: send its token as 'Authorization: Bearer …'"
        return f"no token was sent: {path} needs this Jupyter Server's token as 'Authorization: Bearer <token>'"

    def app_endpoint(self) -> tuple[str | None, str | None]:
        return self._url, self._token

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        from .shutdown import end_with_the_server

        # a Hub's SIGINT, with no terminal, must stop the server, and its exit must not wait on anyio's threads
        end_with_the_server(serverapp, asyncio.get_running_loop())
        await self.start_mcp()

    async def start_mcp(self) -> None:
        """Serve the MCP app on this server's event loop (its managers are not thread-safe)."""
        from ..transport import open_endpoint
        from .kernels import JupyterKernels
        from .live import SharedNotebooks
        from .tools import build_server

        serverapp = self.serverapp
        assert serverapp is not None
        if self._serving is not None:  # already started
            return
        self.kernels = JupyterKernels(
            serverapp.kernel_manager,
            serverapp.session_manager,
            base_url=serverapp.base_url,
            record_root=Path(serverapp.root_dir).expanduser() if self.record and not self.read_only else None,
            live=SharedNotebooks(serverapp.web_app.settings) if self.live_cells and not self.read_only else None,
        )
        self.mcp_server = build_server(
            self.kernels,
            root_dir=serverapp.root_dir,
            read_only=self.read_only,
            timeout=self.execute_timeout,
            output_budget=self.output_budget or None,
            task_grace=self.task_grace,
        ).mcp
        self.upstreams = UpstreamPool()
        token = secrets.token_urlsafe(32)
        # only this server's forwarding handlers call it: no browser origin is allowed
        self._endpoint = open_endpoint(
            self.mcp_server.streamable_http_app(host="127.0.0.1"),
            host="127.0.0.1",
            port=0,
            token=token,
            own_origins=False,
        )
        started = asyncio.Event()
        # the forwarding handlers reuse pooled connections: keep idle ones open between requests
        # a stop waits at most a second for open requests (an assistant's event stream never ends by itself)
        self._serving = asyncio.ensure_future(
            self._endpoint.serve(on_started=started.set, timeout_keep_alive=300, stop_timeout=1.0)
        )
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait([waiter, self._serving], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiter.cancel()
            await self.stop_extension()
            serverapp.log.error("nbmcp: the MCP app did not start; nbmcp/mcp answers 503")
            return
        self._url, self._token = self._endpoint.url, token
        serverapp.log.info("nbmcp: MCP at %snbmcp/mcp and %snbmcp/kernels/{kernel_id}/mcp", *[serverapp.base_url] * 2)

    async def stop_extension(self) -> None:
        """Stop the MCP app and disconnect from the kernels (which stay the Jupyter Server's)."""
        self._url = self._token = None
        if self._serving is not None:
            self._serving.cancel()  # a graceful stop, bounded
        if self.upstreams is not None:
            await self.upstreams.aclose()
        if self._serving is not None:
            # bounded by its stop_timeout; its own failures are logged there, and our cancellation goes through
            await asyncio.wait([self._serving])
            if not self._serving.cancelled() and self._serving.exception() is not None:
                self.log.warning("nbmcp: the MCP app failed", exc_info=self._serving.exception())
        if self.kernels is not None:
            await self.kernels.close_all()
        if self._endpoint is not None:
            self._endpoint.close()
        self._serving = self._endpoint = None
