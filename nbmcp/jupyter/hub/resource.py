"""A user's nbmcp endpoints as an OAuth protected resource: checking the service's access tokens.

Set up by ``nbmcp hub-config``'s spawner environment: ``NBMCP_OAUTH_ISSUER`` (the service's public URL, the
tokens' ``iss``) and ``NBMCP_OAUTH_KEYS_URL`` (where this server fetches the service's public key and the
revoked grants, over the Hub's internal network). The audience is this server's own resource,
``{hub}/user/{name}/nbmcp``, and the subject must be the server's user: alice's token never opens bob's
server. Tokens are checked locally (a signature, a few claims); the key and the revoked grants are
re-read at most every ``refresh_interval`` seconds, so a revoked grant stops working within that time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from tornado.httpclient import AsyncHTTPClient

from .scopes import EXECUTE, READ, granted
from .tokens import LEEWAY, TOKEN_TYPE, InvalidToken, decode_access_token

__all__ = ["OAuthResource", "TokenRefused", "Verified"]

CACHE_SIZE = 1024  # tokens remembered as checked (a client uses one until it expires)


class TokenRefused(Exception):
    """An access token this server will not accept; ``str()`` says why and what to do."""

    def __init__(self, message: str, *, status: int = 401, error: str = "invalid_token", scope: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.scope = scope


@dataclass(frozen=True)
class Verified:
    """Who may do what: the checked claims of an access token."""

    user: str
    client_id: str
    scopes: frozenset[str]
    grant_id: str
    expires_at: int

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise TokenRefused(
                f"this token was granted {' '.join(sorted(self.scopes)) or 'no nbmcp scope'}, and this call needs "
                f"{scope}: connect again and allow '{scope}' on the consent page",
                status=403,
                error="insufficient_scope",
                scope=scope,
            )


class OAuthResource:
    """The token checks of one user's server, for the resource ``{hub}{base_url}nbmcp``."""

    refresh_interval = 2.0

    def __init__(
        self, *, issuer: str, keys_url: str, user: str, base_url: str, log: logging.Logger | None = None
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        self.issuer = issuer.rstrip("/")
        self.keys_url = keys_url
        self.user = user
        origin = urlsplit(self.issuer)
        self.resource = f"{origin.scheme}://{origin.netloc}{base_url}nbmcp"
        self.metadata_path = f"{base_url}nbmcp/.well-known/oauth-protected-resource"
        self.metadata_url = f"{origin.scheme}://{origin.netloc}{self.metadata_path}"
        # the Hub's one URL forwards the person's own token here (``route``): its audience, for its subject only
        self.one_url = f"{self.issuer}/mcp"
        self._keys: dict[str, Any] = {}
        self._revoked: frozenset[str] = frozenset()
        self._fetched = 0.0
        self._fetching: asyncio.Future[None] | None = None
        self._verified: dict[str, Verified] = {}

    @classmethod
    def from_environment(cls, base_url: str, log: logging.Logger | None = None) -> OAuthResource | None:
        """The checks this server was configured for by the Hub, or None when OAuth is not set up."""
        issuer, keys_url = os.environ.get("NBMCP_OAUTH_ISSUER"), os.environ.get("NBMCP_OAUTH_KEYS_URL")
        user = os.environ.get("JUPYTERHUB_USER")
        if not (issuer and keys_url and user):
            return None
        return cls(issuer=issuer, keys_url=keys_url, user=user, base_url=base_url, log=log)

    @staticmethod
    def looks_like_ours(token: str) -> bool:
        """A JWT (Hub API tokens are opaque hex): checked here rather than sent to the Hub."""
        return token.startswith("eyJ") and token.count(".") == 2

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 protected resource metadata."""
        return {
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": [READ, EXECUTE],
            "bearer_methods_supported": ["header"],
            "resource_name": f"nbmcp on {self.user}'s Jupyter server",
        }

    def challenge(self, error: TokenRefused | None = None) -> str:
        """The ``WWW-Authenticate`` value of a refusal (RFC 6750 §3, RFC 9728 §5.1)."""
        value = f'Bearer resource_metadata="{self.metadata_url}"'
        if error is not None:
            value += f', error="{error.error}"'
            if error.scope:
                value += f', scope="{error.scope}"'
            value += f", error_description={json.dumps(str(error).replace(chr(34), chr(39)))}"
        return value

    async def verify(self, token: str) -> Verified:
        """The token's grant, or TokenRefused saying why not."""
        await self._refresh_if_stale()
        known = self._verified.get(token)
        if known is not None:  # checked before: its signature and claims do not change, its validity does
            if known.expires_at < time.time() - LEEWAY:
                raise TokenRefused("the access token has expired: refresh it, or sign in again")
            if known.grant_id in self._revoked:
                raise TokenRefused("the access was revoked: sign in again to allow it anew")
            return known
        verified = await self._verify(token)
        # the audit trail: which assistant acts for the user, each time it presents a new access token
        self.log.info(
            "nbmcp: OAuth client %s (grant %s) signed in as %s with %s, until %s",
            verified.client_id,
            verified.grant_id,
            verified.user,
            " ".join(sorted(verified.scopes)),
            time.strftime("%H:%M:%S", time.localtime(verified.expires_at)),
        )
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    async def _verify(self, token: str) -> Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the access token is malformed ({exc}): sign in again") from None
        key = self._keys.get(header.get("kid", ""))
        if key is None:
            await self._refresh(force=True)  # the service may have a new key
            key = self._keys.get(header.get("kid", ""))
        if key is None or header.get("typ") != TOKEN_TYPE:
            raise TokenRefused("the access token was not issued by this Hub's nbmcp service: sign in again")
        try:
            claims = decode_access_token(token, key, audience=[self.resource, self.one_url], issuer=self.issuer)
        except InvalidToken as exc:
            raise TokenRefused(str(exc)) from None
        if claims["sub"] != self.user:
            raise TokenRefused(f"the access token is {claims['sub']}'s, and this is {self.user}'s server")
        if claims.get("gid") in self._revoked:
            raise TokenRefused("the access was revoked: sign in again to allow it anew")
        return Verified(
            claims["sub"],
            claims.get("client_id", ""),
            frozenset(granted(claims.get("scope", ""))),
            claims.get("gid", ""),
            claims["exp"],
        )

    async def _refresh_if_stale(self) -> None:
        if time.monotonic() - self._fetched > self.refresh_interval:
            await self._refresh()

    async def _refresh(self, force: bool = False) -> None:
        # one fetch at a time: concurrent requests wait for it rather than each asking the service
        if self._fetching is None or self._fetching.done():
            if not force and time.monotonic() - self._fetched <= self.refresh_interval:
                return
            self._fetching = asyncio.ensure_future(self._fetch())
        await asyncio.shield(self._fetching)

    async def _fetch(self) -> None:
        try:
            response = await AsyncHTTPClient().fetch(self.keys_url, request_timeout=10)
            body = json.loads(response.body)
        except Exception as exc:  # the service is down: keep what we know, refuse unknown keys
            if not self._keys:
                raise TokenRefused(
                    f"this server cannot reach the Hub's nbmcp service at {self.keys_url} ({exc}); retry shortly",
                    status=503,
                    error="temporarily_unavailable",
                ) from None
            self._fetched = time.monotonic()  # retry after the interval, not on every request
            return
        self._keys = {k["kid"]: jwt.PyJWK(k).key for k in body.get("keys", []) if "kid" in k}
        self._revoked = frozenset(body.get("revoked", []))
        self._fetched = time.monotonic()
