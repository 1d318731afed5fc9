"""The Tornado side of the protected resource: bearer-token sign-in for the forwarding handlers, the
scope a JSON-RPC message needs, and the RFC 9728 metadata route.

With ``nbmcp:read`` a client may call the tools that declare themselves read-only (``readOnlyHint``) and
everything that is not a tool call (listing, resources, prompts); calling any other tool needs
``nbmcp:execute``. On a kernel's route every tool call needs ``nbmcp:execute``: in-kernel tools are the
notebook's own functions.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server import CallContext
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import User
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .resource import OAuthResource, TokenRefused, Verified
from .scopes import EXECUTE

__all__ = ["ProtectedResourceMetadataHandler", "bearer_token", "needed_scope", "read_only_tools", "sign_in"]


def bearer_token(handler: web.RequestHandler) -> str | None:
    scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") and token.strip() else None


async def sign_in(handler: Any, resource: OAuthResource, token: str) -> Verified | TokenRefused:
    """Check ``token`` in place of Jupyter's identity provider: the grant (and the handler's current user), or
    why it was refused (the handler then has no user, and refuses the request with ``refuse``)."""
    CallContext.set(CallContext.JUPYTER_HANDLER, handler)
    if not handler.check_host():
        raise web.HTTPError(403)
    try:
        grant = await resource.verify(token)
    except TokenRefused as exc:
        handler.current_user = handler._jupyter_current_user = None
        return exc
    handler.current_user = handler._jupyter_current_user = User(grant.user)
    handler.set_cors_headers()
    return grant


def refuse(handler: Any, resource: OAuthResource, error: TokenRefused | None, message: str = "") -> None:
    """401 (or 403 for a missing scope) with the ``WWW-Authenticate`` challenge MCP clients discover from."""
    status = error.status if error is not None else 401
    text = message or str(error)
    handler.set_status(status)
    if status in (401, 403):
        handler.set_header("WWW-Authenticate", resource.challenge(error))
    body: dict[str, Any] = {"message": text, "error": text}
    if error is not None and error.scope:
        body["required_scope"] = error.scope
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps(body))


def needed_scope(body: bytes, read_only: frozenset[str] | None) -> str | None:
    """The scope beyond ``nbmcp:read`` that a JSON-RPC message (or batch) needs, or None.

    ``read_only``: names of the tools a read scope may call (None: no tool call is read-only).
    """
    try:
        message = json.loads(body) if body else None
    except ValueError:
        return None  # the MCP app answers a parse error
    for item in message if isinstance(message, list) else [message]:
        if isinstance(item, dict) and item.get("method") == "tools/call":
            params = item.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if read_only is None or name not in read_only:
                return EXECUTE
    return None


_read_only_cache: dict[int, frozenset[str]] = {}


async def read_only_tools(mcp_server: Any) -> frozenset[str]:
    """Names of the tools of ``mcp_server`` (an MCPServer, its tools fixed once built) that only read."""
    key = id(mcp_server)
    if key not in _read_only_cache:
        tools = await mcp_server.list_tools()
        _read_only_cache[key] = frozenset(
            t.name for t in tools if t.annotations is not None and t.annotations.read_only_hint is True
        )
    return _read_only_cache[key]


class ProtectedResourceMetadataHandler(APIHandler):
    """``{base_url}nbmcp/.well-known/oauth-protected-resource`` (RFC 9728), named by every 401's challenge."""

    def initialize(self, resource: OAuthResource) -> None:
        self.resource = resource

    @allow_unauthenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(json.dumps(self.resource.metadata()))
