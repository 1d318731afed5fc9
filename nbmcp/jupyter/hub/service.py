"""The Hub-managed service: the SDK's authorization-server routes, the consent pages and the public keys,
under the service's prefix (``/services/nbmcp/``), served by uvicorn where the Hub expects it.

Configured by the environment the Hub gives a managed service (``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_SERVICE_URL``, the OAuth client variables) and by ``nbmcp hub-config``'s lines:
``NBMCP_HUB_PUBLIC_URL`` (the Hub's URL as browsers and assistants see it), ``NBMCP_OAUTH_STATE_DIR``,
``NBMCP_OAUTH_ACCESS_TTL`` and ``NBMCP_OAUTH_REFRESH_TTL`` (seconds), ``NBMCP_HUB_PROXY_URL`` (the Hub's proxy
as the service reaches it, for the one URL ``/services/nbmcp/mcp``; default the public URL). For Client ID
Metadata Documents (``cimd``): ``NBMCP_OAUTH_CIMD_CA_FILE`` (more certificates to trust for the documents'
hosts) and, for tests and single-machine trials only, ``NBMCP_OAUTH_CIMD_ALLOW_LOOPBACK=1`` (documents on
loopback addresses, over http too).
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
from starlette.types import ASGIApp, Receive, Scope, Send

from .cimd import CIMDError, ClientMetadataDocuments, is_cimd_client_id
from .consent import ConsentPages
from .grants import Grants
from .manage import GrantsPage
from .route import OneURL
from .scopes import READ, SCOPES
from .store import GrantsFile
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
    cimd_allow_loopback: bool = False,
    cimd_ca_file: str | None = None,
) -> tuple[Starlette, Grants]:
    """The service's ASGI app for a Hub at public ``hub_url`` (ends with "/"), mounted at ``prefix``;
    ``hub_auth`` signs people in through the Hub (and its API token reads whose servers run);
    ``proxy_url``: where the service reaches the Hub's proxy to forward the one URL (default ``hub_url``)."""
    issuer = hub_url.rstrip("/") + prefix.rstrip("/")
    grants = Grants(
        SigningKey(state_dir),
        issuer=issuer,
        hub_url=hub_url,
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        store=GrantsFile(state_dir),
        documents=ClientMetadataDocuments(allow_loopback=cimd_allow_loopback, ca_file=cimd_ca_file),
    )
    routes = create_auth_routes(
        grants, AnyHttpUrl(issuer), client_registration_options=REGISTRATION, revocation_options=REVOCATION
    )
    metadata = build_metadata(AnyHttpUrl(issuer), None, REGISTRATION, REVOCATION)
    # public clients (no secret) are what desktop and browser assistants register as
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    metadata.client_id_metadata_document_supported = True
    for route in routes:
        if isinstance(route, Route) and route.path == "/authorize":
            route.app = _CIMDFirst(route.app, grants)
    # RFC 8414 puts the metadata at {origin}/.well-known/oauth-authorization-server{prefix}, which on a Hub is
    # the Hub's own page; clients then try {issuer}/.well-known/openid-configuration (OIDC discovery).
    metadata_handler = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    routes = [r for r in routes if not (isinstance(r, Route) and r.path == "/.well-known/oauth-authorization-server")]
    routes.append(Route("/.well-known/oauth-authorization-server", metadata_handler, methods=["GET", "OPTIONS"]))
    # the TypeScript SDK reads that path as OpenID Provider Metadata and refuses it without the members OIDC
    # requires; nbmcp issues no ID tokens (no "openid" scope), these only make the document parse
    oidc = metadata.model_dump(mode="json", exclude_none=True) | {
        "jwks_uri": f"{issuer}/keys",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }
    oidc_handler = cors_middleware(_static_json(oidc), ["GET", "OPTIONS"])
    routes.append(Route("/.well-known/openid-configuration", oidc_handler, methods=["GET", "OPTIONS"]))
    routes.append(Route("/keys", _keys(grants), methods=["GET"]))
    pages = ConsentPages(grants, hub_auth, prefix, secure=urlsplit(hub_url).scheme == "https")
    routes.extend(pages.routes())
    routes.extend(GrantsPage(grants, pages).routes())
    one_url = OneURL(grants, api_url=hub_auth.api_url, api_token=hub_auth.api_token, proxy_url=proxy_url or hub_url)
    routes.extend(one_url.routes())
    return Starlette(routes=[Mount(prefix.rstrip("/"), routes=routes)]), grants


class _CIMDFirst:
    """/authorize reads a URL client id's metadata document before the SDK's handler does, to say why it
    cannot be used (the handler, given no client, says only "not found")."""

    def __init__(self, app: ASGIApp, grants: Grants) -> None:
        self.app = app
        self.grants = grants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client_id = Request(scope).query_params.get("client_id", "")
        if client_id and client_id not in self.grants.clients and is_cimd_client_id(client_id):
            try:
                await self.grants.documents.client(client_id)  # cached for the handler's get_client
            except CIMDError as exc:
                body = {"error": "invalid_client", "error_description": str(exc)}
                await JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _static_json(body: dict[str, object]):
    async def handle(request: Request) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})

    return handle


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
        cimd_allow_loopback=os.environ.get("NBMCP_OAUTH_CIMD_ALLOW_LOOPBACK") == "1",
        cimd_ca_file=os.environ.get("NBMCP_OAUTH_CIMD_CA_FILE") or None,
    )
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    uvicorn.run(app, host=bind.hostname or "127.0.0.1", port=bind.port or 10101, log_level="info")
