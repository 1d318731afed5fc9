"""One URL for the whole Hub: ``{hub}/services/nbmcp/mcp`` takes each person to their own server.

A client connects once to the service's URL; the person signs in and consents as for their own server,
and the access token's audience is this URL (``Grants.one_url``). Each request is checked here (the
service holds the key and knows revoked grants at once), then forwarded with the same token, through the
Hub's proxy, to ``{hub}/user/{sub}/nbmcp/mcp``, whose server checks it again: it accepts the one URL as an
audience only for its own user, and enforces the scopes and writes the audit line as for a direct token.
The service holds no credential for users' servers; it can only pass on what the person's assistant sent.

Each kernel's own endpoint is there too: ``{hub}/services/nbmcp/mcp/kernels/{kernel_id}`` goes to
``{hub}/user/{sub}/nbmcp/kernels/{kernel_id}/mcp``. It sits below the one URL on purpose: the one URL is the
resource (RFC 8707) that covers it, so the same sign-in and token serve every kernel of the person's server.

Whether a server is running comes from the Hub's REST API (the service's ``read:servers`` role), remembered
for a few seconds; a stopped server is answered in words, with where to start it, as a JSON-RPC error.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..forward import DROP_REQUEST_HEADERS, DROP_RESPONSE_HEADERS
from ..upstream import UpstreamPool
from .grants import Grants
from .scopes import EXECUTE, READ
from .tokens import TOKEN_TYPE, InvalidToken, decode_access_token

__all__ = ["OneURL"]

log = logging.getLogger(__name__)

READY_FOR = 5.0  # seconds a running server is taken as running without asking the Hub again
SERVER_ERROR = -32000  # JSON-RPC: implementation-defined server error
KERNEL_ID = re.compile(r"[0-9A-Za-z-]{1,64}")  # Jupyter's kernel ids are UUIDs


class Refused(Exception):
    def __init__(self, message: str, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class OneURL:
    """``/mcp`` and its RFC 9728 metadata under the service's prefix."""

    def __init__(self, grants: Grants, *, api_url: str, api_token: str, proxy_url: str) -> None:
        self.grants = grants
        self.resource = grants.one_url
        self.metadata_url = f"{grants.issuer}/.well-known/oauth-protected-resource/mcp"
        self.api_url = api_url.rstrip("/")  # the Hub's REST API, as the service reaches it
        self.api_token = api_token
        self.proxy_url = proxy_url.rstrip("/") + "/"  # the Hub's proxy, as the service reaches it
        self.upstreams = UpstreamPool()
        self.hub_api = httpx.AsyncClient(timeout=10, trust_env=False)
        self._running_until: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/mcp", self.handle, methods=["GET", "POST", "DELETE"]),
            Route("/mcp/kernels/{kernel_id}", self.handle, methods=["GET", "POST", "DELETE"]),
            Route("/.well-known/oauth-protected-resource/mcp", self.metadata, methods=["GET"]),
        ]

    async def aclose(self) -> None:
        await self.upstreams.aclose()
        await self.hub_api.aclose()

    async def metadata(self, request: Request) -> Response:
        body = {
            "resource": self.resource,
            "authorization_servers": [self.grants.issuer],
            "scopes_supported": [READ, EXECUTE],
            "bearer_methods_supported": ["header"],
            "resource_name": "nbmcp on your Jupyter server (this Hub's one URL for everyone)",
        }
        return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})

    # ------------------------------------------------------------------ the request
    async def handle(self, request: Request) -> Response:
        body = await request.body()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() in ("bearer", "token") else ""
        if not token:
            return self._refuse(
                None, "no token was sent: connect with OAuth (MCP clients find the sign-in from this answer)"
            )
        try:
            user = self._verify(token)
        except Refused as exc:
            return self._refuse(exc, str(exc))
        kernel_id = request.path_params.get("kernel_id")
        if kernel_id is not None and not KERNEL_ID.fullmatch(kernel_id):
            return _jsonrpc_error(body, f"{kernel_id!r} is not a kernel id: use {self.resource}/kernels/<id>", 404)
        stopped = await self._not_running(user)
        if stopped:
            return _jsonrpc_error(body, stopped, 503)
        target = f"nbmcp/kernels/{kernel_id}/mcp" if kernel_id else "nbmcp/mcp"
        return await self._forward(request, user, token, body, target)

    def _verify(self, token: str) -> str:
        """The user whose server the token opens; Refused when it does not open any."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refused(
                "this URL takes tokens from the Hub's nbmcp sign-in (OAuth); a JupyterHub API token works at "
                f"{self.grants.hub_url}user/<name>/nbmcp/mcp"
            ) from None
        if header.get("typ") != TOKEN_TYPE or header.get("kid") != self.grants.key.kid:
            raise Refused("the access token was not issued by this Hub's nbmcp service: sign in again")
        try:
            claims = decode_access_token(
                token, self.grants.key.public_key, audience=self.resource, issuer=self.grants.issuer
            )
        except InvalidToken as exc:
            raise Refused(str(exc)) from None
        grant = self.grants.grants.get(claims.get("gid", ""))
        if grant is None or grant.revoked:
            raise Refused("the access was revoked: sign in again to allow it anew")
        return str(claims["sub"])

    async def _not_running(self, user: str) -> str | None:
        """Why ``user``'s server cannot answer now, or None when it is running."""
        if self._running_until.get(user, 0) > time.monotonic():
            return None
        try:
            response = await self.hub_api.get(
                f"{self.api_url}/users/{quote(user, safe='')}", headers={"Authorization": f"token {self.api_token}"}
            )
        except httpx.HTTPError as exc:
            return f"the Hub's API at {self.api_url} is not answering ({exc}); retry shortly"
        if response.status_code == 404:
            return f"there is no user {user!r} on this Hub"
        if response.status_code != 200:
            return (
                f"the Hub refused to say whether {user}'s server runs ({response.status_code}): give the nbmcp "
                "service the read:servers scope (`nbmcp hub-config` prints the role)"
            )
        server = (response.json().get("servers") or {}).get("")
        hub = self.grants.hub_url
        if server and server.get("ready"):
            self._running_until[user] = time.monotonic() + READY_FOR
            return None
        if server and server.get("pending") == "spawn":
            return f"{user}'s server is starting: retry in a few seconds (progress at {hub}hub/spawn-pending/{user})"
        return f"{user}'s server is not running: start it at {hub}hub/spawn/{user}, then retry"

    async def _forward(self, request: Request, user: str, token: str, body: bytes, target: str) -> Response:
        url = f"{self.proxy_url}user/{quote(user, safe='')}/{target}"
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROP_REQUEST_HEADERS]
        headers.append(("Authorization", f"Bearer {token}"))
        try:
            upstream = await self.upstreams.request(request.method, url, headers, body)
        except OSError as exc:
            message = f"the Hub's proxy at {self.proxy_url} is not answering ({exc or type(exc).__name__})"
            return _jsonrpc_error(body, message, 502)
        content_type = upstream.header("content-type")
        if upstream.status_code >= 400 and content_type.startswith("text/html"):
            # the Hub answered instead of the server (it stopped since we last asked): say so in words
            await upstream.aclose()
            self._running_until.pop(user, None)
            stopped = await self._not_running(user)
            return _jsonrpc_error(body, stopped or f"{user}'s server answered {upstream.status_code}; retry", 503)
        response = StreamingResponse(_copy(upstream), status_code=upstream.status_code)
        for name, value in upstream.headers:
            lowered = name.lower()
            if lowered == "www-authenticate":  # the client re-authorizes here, for this URL, not at the server
                value = re.sub(r'resource_metadata="[^"]*"', f'resource_metadata="{self.metadata_url}"', value)
            elif lowered in DROP_RESPONSE_HEADERS:
                continue
            response.raw_headers.append((lowered.encode("latin-1"), value.encode("latin-1")))
        if content_type.startswith("text/event-stream"):
            response.raw_headers.append((b"x-accel-buffering", b"no"))
        return response

    def _refuse(self, error: Refused | None, message: str) -> Response:
        challenge = f'Bearer resource_metadata="{self.metadata_url}"'
        if error is not None:
            challenge += f', error="{error.error}", error_description={json.dumps(message.replace(chr(34), chr(39)))}'
        status = error.status if error is not None else 401
        return JSONResponse(
            {"message": message, "error": message}, status_code=status, headers={"WWW-Authenticate": challenge}
        )


async def _copy(upstream: Any) -> Any:
    """The upstream's body as it arrives (each chunk goes out at once: server-sent events are not held)."""
    try:
        async for chunk in upstream.chunks():
            yield chunk
    except (OSError, ValueError):  # the server went away mid-stream: end ours too
        return
    finally:
        await upstream.aclose()


def _jsonrpc_error(body: bytes, message: str, status: int) -> Response:
    """``message`` as a JSON-RPC error answering the request in ``body`` (MCP clients show it), at ``status``."""
    request_id = None
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict):
            request_id = parsed.get("id")
    except ValueError:
        pass
    error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": SERVER_ERROR, "message": message}}
    return JSONResponse(error, status_code=status)
