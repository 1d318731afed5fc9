"""The Hub-managed service: the SDK's authorization-server routes, the consent pages and the public keys,
under the service's prefix (``/services/nbmcp/``), served by uvicorn where the Hub expects it.

Configured by the environment the Hub gives a managed service (``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_SERVICE_URL``, the OAuth client variables) and by ``nbmcp hub-config``'s lines:
``NBMCP_HUB_PUBLIC_URL`` (the Hub's URL as browsers and assistants see it), ``NBMCP_OAUTH_STATE_DIR``,
``NBMCP_OAUTH_ACCESS_TTL`` and ``NBMCP_OAUTH_REFRESH_TTL`` (seconds), ``NBMCP_HUB_PROXY_URL`` (the Hub's proxy
as the service reaches it, for the one URL ``/services/nbmcp/mcp``; default the public URL).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuth
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .consent import ConsentPages
from .grants import Grants
from .manage import GrantsPage
from .route import OneURL
from .scopes import READ, SCOPES
from .tokens import SigningKey

__all__ = ["build_app", "main"]

REGISTRATION = ClientRegistrationOptions(enabled=True, valid_scopes=list(SCOPES), default_scopes=[READ])
REVOCATION = RevocationOptions(enabled=True)


def build_app(
    hub_auth: HubOAuth,
    *,
    hub_url: str,
    prefix: str,
    state_dir: Path,
    access_ttl: int = 600,
    refresh_ttl: int = 30 * 86400,
    proxy_url: str | None = None,
) -> tuple[Starlette, Grants]:
    """The service's ASGI app for a Hub at public ``hub_url`` (ends with "/"), mounted at ``prefix``;
    ``hub_auth`` signs people in through the Hub (and its API token reads whose servers run);
    ``proxy_url``: where the service reaches the Hub's proxy to forward the one URL (default ``hub_url``)."""
    issuer = hub_url.rstrip("/") + prefix.rstrip("/")
    grants = Grants(
        SigningKey(state_dir), issuer=issuer, hub_url=hub_url, access_ttl=access_ttl, refresh_ttl=refresh_ttl
    )
    routes = create_auth_routes(
        grants, AnyHttpUrl(issuer), client_registration_options=REGISTRATION, revocation_options=REVOCATION
    )
    metadata = build_metadata(AnyHttpUrl(issuer), None, REGISTRATION, REVOCATION)
    # public clients (no secret) are what desktop and browser assistants register as
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    # RFC 8414 puts the metadata at {origin}/.well-known/oauth-authorization-server{prefix}, which on a Hub is
    # the Hub's own page; clients then try {issuer}/.well-known/openid-configuration (OIDC discovery).
    metadata_handler = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    routes = [r for r in routes if not (isinstance(r, Route) and r.path == "/.well-known/oauth-authorization-server")]
    for well_known in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        routes.append(Route(well_known, metadata_handler, methods=["GET", "OPTIONS"]))
    routes.append(Route("/keys", _keys(grants), methods=["GET"]))
    pages = ConsentPages(grants, hub_auth, prefix, secure=urlsplit(hub_url).scheme == "https")
    routes.extend(pages.routes())
    routes.extend(GrantsPage(grants, pages).routes())
    one_url = OneURL(grants, api_url=hub_auth.api_url, api_token=hub_auth.api_token, proxy_url=proxy_url or hub_url)
    routes.extend(one_url.routes())
    return Starlette(routes=[Mount(prefix.rstrip("/"), routes=routes)]), grants


def _keys(grants: Grants):
    async def keys(request: Request) -> Response:
        # read by users' servers: the key to check tokens with, and the grants whose tokens to refuse
        body = {"keys": [grants.key.jwk], "revoked": grants.revoked()}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return keys


def main() -> None:
    import uvicorn

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/nbmcp/")
    hub_url = os.environ.get("NBMCP_HUB_PUBLIC_URL") or os.environ.get("JUPYTERHUB_PUBLIC_URL")
    if not hub_url:
        raise SystemExit(
            "nbmcp.jupyter.hub: set NBMCP_HUB_PUBLIC_URL (the Hub's URL as people open it) in the service's "
            "environment; `nbmcp hub-config --public-url URL` prints the lines"
        )
    state_dir = Path(os.environ.get("NBMCP_OAUTH_STATE_DIR", "nbmcp-oauth"))
    app, _ = build_app(
        HubOAuth(cache_max_age=60),  # the Hub's OAuth client settings come from its environment
        hub_url=hub_url.rstrip("/") + "/",
        prefix=prefix,
        state_dir=state_dir,
        access_ttl=int(os.environ.get("NBMCP_OAUTH_ACCESS_TTL", "600")),
        refresh_ttl=int(os.environ.get("NBMCP_OAUTH_REFRESH_TTL", str(30 * 86400))),
        proxy_url=os.environ.get("NBMCP_HUB_PROXY_URL") or None,
    )
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    uvicorn.run(app, host=bind.hostname or "127.0.0.1", port=bind.port or 10101, log_level="info")
