"""The authorization server's state: registered clients, pending consents, codes, grants, refresh tokens.

Implements the MCP SDK's ``OAuthAuthorizationServerProvider``; the SDK's handlers do the protocol checks
(PKCE S256, redirect URI, code expiry, client authentication). Registered clients, grants (revoked or not)
and refresh tokens (hashed) survive a restart in the grants file (``store``); pending consents and codes
live a minute or ten and are not kept. A client id that is an https URL is a Client ID Metadata Document
(``cimd``). A replayed code or a rotated-out refresh token revokes the whole grant (OAuth 2.1 §4.1.3, §6.1):
one of the two parties presenting it is an attacker.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from .cimd import CIMDError, ClientMetadataDocuments, is_cimd_client_id
from .scopes import SCOPES
from .store import GrantsFile, token_hash
from .tokens import SigningKey

__all__ = ["Grants", "Pending"]

CODE_TTL = 60
PENDING_TTL = 600
# registration is open to anyone (RFC 7591): past this many clients, the oldest without a live grant goes
MAX_CLIENTS = 5000


class Code(AuthorizationCode):
    grant_id: str


class Refresh(RefreshToken):
    grant_id: str


@dataclass
class Pending:
    """An authorization request waiting for the person to sign in and consent."""

    client: OAuthClientInformationFull
    params: AuthorizationParams
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@dataclass
class Grant:
    """What one person allowed one client: the unit that revocation ends."""

    user: str
    client_id: str
    client_name: str
    scopes: list[str]
    resource: str
    created: float
    revoked: bool = False
    revoked_at: float = 0.0


class Grants:
    """The provider behind the SDK's /authorize, /token, /register and /revoke handlers."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        hub_url: str,
        access_ttl: int,
        refresh_ttl: int,
        store: GrantsFile | None = None,
        documents: ClientMetadataDocuments | None = None,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.hub_url = hub_url  # public, ends with "/"
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.pending: dict[str, Pending] = {}
        self.codes: dict[str, Code] = {}
        # spent codes and rotated-out refresh tokens -> (grant id, until when a replay is remembered)
        self.used_codes: dict[str, tuple[str, float]] = {}
        self.grants: dict[str, Grant] = {}
        self.refresh: dict[str, Refresh] = {}  # by hash of the token; ``Refresh.token`` is that hash
        self.rotated: dict[str, tuple[str, float]] = {}  # by hash too
        self.store = store
        self.documents = documents or ClientMetadataDocuments()
        if store is not None:
            self._restore(store.load())

    # ------------------------------------------------------------------ resources
    def resource_of(self, user: str) -> str:
        """The resource (RFC 8707) that is ``user``'s nbmcp endpoints: the audience of their tokens."""
        return f"{self.hub_url}user/{user}/nbmcp"

    @property
    def one_url(self) -> str:
        """The resource that is the whole Hub's one URL (``route``): a token for it opens its subject's server."""
        return f"{self.issuer}/mcp"

    def grant_resource(self, requested: str | None, user: str) -> str:
        """The audience of the tokens of ``user``'s grant: the one URL when asked for, else their server."""
        return (
            self.one_url if requested is not None and requested.rstrip("/") == self.one_url else self.resource_of(user)
        )

    def resource_user(self, resource: str) -> str | None:
        """Whose nbmcp endpoints ``resource`` names (it or a path below it), or None if it names none."""
        hub = urlsplit(self.hub_url)
        wanted = urlsplit(resource)
        if (wanted.scheme, wanted.netloc) != (hub.scheme, hub.netloc) or wanted.query or wanted.fragment:
            return None
        rest = wanted.path.removeprefix(hub.path)
        if rest == wanted.path and hub.path != "/":
            return None
        parts = rest.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "user" and parts[2] == "nbmcp" and parts[1]:
            return parts[1]
        return None

    # ------------------------------------------------------------------ clients (RFC 7591)
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        registered = self.clients.get(client_id)
        if registered is not None or not is_cimd_client_id(client_id):
            return registered
        try:
            return await self.documents.client(client_id)
        except CIMDError:
            return None  # /authorize says why first (``service``); the token endpoint says invalid_client

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        if client_info.client_secret:
            # derived, not stored: the grants file alone authenticates no client
            client_info.client_secret = self.key.derive(f"client-secret:{client_info.client_id}")
        if len(self.clients) >= MAX_CLIENTS:
            in_use = {g.client_id for g in self.grants.values() if not g.revoked}
            idle = [c for c in self.clients.values() if c.client_id not in in_use]
            if idle:
                oldest = min(idle, key=lambda c: c.client_id_issued_at or 0)
                del self.clients[str(oldest.client_id)]
        self.clients[client_info.client_id] = client_info
        self._save()

    # ------------------------------------------------------------------ authorize
    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        requested = params.resource
        if requested is not None and self.resource_user(requested) is None and requested.rstrip("/") != self.one_url:
            raise AuthorizeError(
                "invalid_target",
                f"resource {requested!r} is not nbmcp on this Hub: expected {self.one_url} or "
                f"{self.hub_url}user/<name>/nbmcp",
            )
        unknown = set(params.scopes or []) - set(SCOPES)
        if unknown:
            raise AuthorizeError("invalid_scope", f"unknown scopes {sorted(unknown)}; nbmcp has {sorted(SCOPES)}")
        self._expire()
        request_id = secrets.token_urlsafe(24)
        self.pending[request_id] = Pending(client, params, time.time() + PENDING_TTL)
        return f"{self.issuer}/consent?{urlencode({'request': request_id})}"

    def approve(self, pending: Pending, user: str, scopes: list[str]) -> str:
        """The person allowed ``scopes``: a one-time code, and where to send the browser with it."""
        params = pending.params
        resource = self.grant_resource(params.resource, user)
        grant_id = secrets.token_urlsafe(16)
        client_id = pending.client.client_id or ""
        self.grants[grant_id] = Grant(
            user, client_id, pending.client.client_name or client_id, scopes, resource, time.time()
        )
        self._save()
        code = secrets.token_urlsafe(32)
        self.codes[code] = Code(
            code=code,
            scopes=scopes,
            expires_at=time.time() + CODE_TTL,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=resource,
            subject=user,
            grant_id=grant_id,
        )
        return _with_query(str(params.redirect_uri), code=code, state=params.state, iss=self.issuer)

    def deny(self, pending: Pending) -> str:
        return _with_query(
            str(pending.params.redirect_uri),
            error="access_denied",
            error_description="the person declined",
            state=pending.params.state,
            iss=self.issuer,
        )

    # ------------------------------------------------------------------ token
    async def load_authorization_code(self, client: OAuthClientInformationFull, authorization_code: str) -> Code | None:
        code = self.codes.get(authorization_code)
        if code is not None and code.client_id != client.client_id:
            return None  # another client's code: it cannot spend (or burn) it
        code = self.codes.pop(authorization_code, None)  # one use: popped even if the exchange then fails
        if code is None:
            replayed = self.used_codes.get(authorization_code)
            if replayed:
                self.revoke_grant(replayed[0])
            return None
        self.used_codes[authorization_code] = (code.grant_id, time.time() + PENDING_TTL)
        return code

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: Code
    ) -> OAuthToken:
        return self._issue(authorization_code.grant_id, authorization_code.scopes)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> Refresh | None:
        hashed = token_hash(refresh_token)
        found = self.refresh.get(hashed)
        if found is None:
            replayed = self.rotated.get(hashed)
            if replayed:
                self.revoke_grant(replayed[0])
            return None
        return found

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Refresh, scopes: list[str]
    ) -> OAuthToken:
        grant = self.grants.get(refresh_token.grant_id)
        if grant is None or grant.revoked:
            raise TokenError("invalid_grant", "this grant was revoked: sign in again")
        del self.refresh[refresh_token.token]  # the hash
        self.rotated[refresh_token.token] = (refresh_token.grant_id, float(refresh_token.expires_at or 0))
        return self._issue(refresh_token.grant_id, scopes)

    def _issue(self, grant_id: str, scopes: list[str]) -> OAuthToken:
        grant = self.grants[grant_id]
        access, _ = self.key.mint(
            issuer=self.issuer,
            subject=grant.user,
            audience=grant.resource,
            client_id=grant.client_id,
            scopes=scopes,
            grant_id=grant_id,
            ttl=self.access_ttl,
        )
        refresh = secrets.token_urlsafe(32)
        self.refresh[token_hash(refresh)] = Refresh(
            token=token_hash(refresh),
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(time.time()) + self.refresh_ttl,
            resource=grant.resource,
            subject=grant.user,
            grant_id=grant_id,
        )
        self._save()
        return OAuthToken(
            access_token=access,
            token_type="Bearer",
            expires_in=self.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh,
        )

    # ------------------------------------------------------------------ revocation
    async def load_access_token(self, token: str) -> AccessToken | None:
        claims = self.key.read(token, self.issuer)
        if claims is None:
            return None
        return AccessToken(
            token=token,
            client_id=claims["client_id"],
            scopes=claims["scope"].split(),
            expires_at=claims["exp"],
            resource=claims["aud"],
            subject=claims["sub"],
            claims={"gid": claims["gid"]},
        )

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        grant_id = token.grant_id if isinstance(token, Refresh) else (token.claims or {}).get("gid")
        if grant_id:
            self.revoke_grant(grant_id)

    def revoke_grant(self, grant_id: str) -> None:
        grant = self.grants.get(grant_id)
        if grant is not None and not grant.revoked:
            grant.revoked = True
            grant.revoked_at = time.time()
        for token in [t for t, r in self.refresh.items() if r.grant_id == grant_id]:
            del self.refresh[token]
        self._save()

    def revoked(self) -> list[str]:
        """Ids of revoked grants: users' servers refuse their access tokens before these expire."""
        return [grant_id for grant_id, grant in self.grants.items() if grant.revoked]

    def _expire(self) -> None:
        """Forget what can no longer be used (called with each new authorization request)."""
        now = time.time()
        for request_id in [r for r, p in self.pending.items() if p.expires_at < now]:
            del self.pending[request_id]
        for code in [c for c, v in self.codes.items() if v.expires_at < now]:
            del self.codes[code]
        for token in [t for t, r in self.refresh.items() if r.expires_at and r.expires_at < now]:
            del self.refresh[token]
        for remembered in (self.used_codes, self.rotated):
            for key in [k for k, (_, until) in remembered.items() if until < now]:
                del remembered[key]
        # a revoked grant's access tokens have all expired: servers need not hear of it any more
        spent = now - self.access_ttl - 60
        for grant_id in [g for g, v in self.grants.items() if v.revoked and v.revoked_at < spent]:
            del self.grants[grant_id]

    # ------------------------------------------------------------------ persistence (``store``)
    def _save(self) -> None:
        if self.store is None:
            return
        self.store.save(
            {
                # a metadata document client is read again from its URL, not kept
                "clients": {
                    i: c.model_dump(mode="json", exclude={"client_secret"}, exclude_none=True)
                    for i, c in self.clients.items()
                },
                "grants": {i: asdict(g) for i, g in self.grants.items()},
                "refresh": {h: r.model_dump(mode="json") for h, r in self.refresh.items()},
                "rotated": self.rotated,
            }
        )

    def _restore(self, data: dict[str, Any]) -> None:
        for client_id, saved in data.get("clients", {}).items():
            client = OAuthClientInformationFull.model_validate(saved)
            if client.token_endpoint_auth_method not in (None, "none"):
                client.client_secret = self.key.derive(f"client-secret:{client_id}")
            self.clients[client_id] = client
        self.grants = {i: Grant(**g) for i, g in data.get("grants", {}).items()}
        self.refresh = {h: Refresh.model_validate(r) for h, r in data.get("refresh", {}).items()}
        self.rotated = {h: (g, until) for h, (g, until) in data.get("rotated", {}).items()}
        self._expire()


def _with_query(url: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"
