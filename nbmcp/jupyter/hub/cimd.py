"""Client ID Metadata Documents (MCP authorization 2025-11-25, draft-ietf-oauth-client-id-metadata-document):
a client whose ``client_id`` is an https URL is described by the JSON document at that URL.

Fetching a URL that anyone may name is a server-side request forgery risk, so the fetch is bounded: https
only, the host's addresses must all be public (no loopback, private, link-local, multicast or reserved
address), the connection goes to the address that was checked (no DNS rebinding between check and fetch),
no redirects, at most ``MAX_BYTES`` within ``TIMEOUT`` seconds. Documents are cached as their
``Cache-Control`` says (``max-age``, bounded; ``no-store``/``no-cache`` are not cached).

``allow_loopback`` (``NBMCP_OAUTH_CIMD_ALLOW_LOOPBACK=1``) is for tests and single-machine trials only: it
lets loopback addresses through, over https or plain http. ``ca_file`` (``NBMCP_OAUTH_CIMD_CA_FILE``) adds
the certificates to trust for documents' hosts (default: the system's).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import certifi
import httpx
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from .scopes import SCOPES

__all__ = ["CIMDError", "ClientMetadataDocuments", "is_cimd_client_id"]

MAX_BYTES = 5 * 1024  # the draft's suggested bound; a client's metadata is a few hundred bytes
TIMEOUT = 5.0
MAX_AGE = 24 * 3600
DEFAULT_AGE = 300  # no Cache-Control: re-read after five minutes
MAX_CACHED = 1000


class CIMDError(ValueError):
    """A client id metadata document that cannot be used; ``str()`` says why and what to do."""


def is_cimd_client_id(client_id: str) -> bool:
    """Whether ``client_id`` names a metadata document (an http(s) URL with a path), not a registered id."""
    parts = urlsplit(client_id)
    return parts.scheme in ("https", "http") and bool(parts.netloc) and parts.path not in ("", "/")


class ClientMetadataDocuments:
    """Fetches, checks and caches the metadata documents of URL client ids."""

    def __init__(self, *, allow_loopback: bool = False, ca_file: str | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.ssl = ssl.create_default_context(cafile=certifi.where())
        if ca_file:
            self.ssl.load_verify_locations(cafile=ca_file)
        self.cache: dict[str, tuple[OAuthClientInformationFull, float]] = {}

    async def client(self, client_id: str) -> OAuthClientInformationFull:
        """The client ``client_id``'s document describes; :class:`CIMDError` when it cannot be used."""
        cached = self.cache.get(client_id)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        body, max_age = await self._fetch(client_id)
        client = _parse(client_id, body)
        if max_age > 0:
            if len(self.cache) >= MAX_CACHED:
                self.cache.pop(next(iter(self.cache)))
            self.cache[client_id] = (client, time.time() + max_age)
        return client

    async def _fetch(self, url: str) -> tuple[bytes, int]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.username or parts.password or parts.fragment:
            raise CIMDError(f"client_id {url!r}: a metadata document URL has no credentials or fragment")
        if any(segment in (".", "..") for segment in parts.path.split("/")):
            raise CIMDError(f"client_id {url!r}: a metadata document URL has no '.' or '..' path segments")
        if parts.scheme != "https" and not self.allow_loopback:
            raise CIMDError(f"client_id {url!r}: a metadata document must be served over https")
        address = await self._checked_address(url, host, parts.port or (443 if parts.scheme == "https" else 80))
        if parts.scheme != "https" and not (self.allow_loopback and address.is_loopback):
            raise CIMDError(f"client_id {url!r}: a metadata document must be served over https")
        # connect to the address just checked; TLS still verifies the certificate against the host name
        netloc = f"[{address}]" if address.version == 6 else str(address)
        if parts.port:
            netloc += f":{parts.port}"
        target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        extensions = {} if _is_ip(host) or parts.scheme != "https" else {"sni_hostname": host}
        headers = {"Host": parts.netloc, "Accept": "application/json"}
        try:
            with anyio.fail_after(TIMEOUT):
                async with httpx.AsyncClient(verify=self.ssl, trust_env=False, follow_redirects=False) as http:
                    request = http.build_request("GET", target, headers=headers, extensions=extensions)
                    response = await http.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            raise CIMDError(
                                f"client_id {url!r}: the document answered with a redirect; serve it at the "
                                "client_id URL itself"
                            )
                        if response.status_code != 200:
                            raise CIMDError(
                                f"client_id {url!r}: fetching the document gave HTTP {response.status_code}"
                            )
                        body = b""
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > MAX_BYTES:
                                raise CIMDError(f"client_id {url!r}: the document is larger than {MAX_BYTES} bytes")
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise CIMDError(f"client_id {url!r}: the document did not arrive within {TIMEOUT:g} s") from None
        except httpx.HTTPError as exc:
            raise CIMDError(
                f"client_id {url!r}: the document could not be fetched ({exc or type(exc).__name__})"
            ) from None
        return body, _max_age(response.headers.get("cache-control"))

    async def _checked_address(self, url: str, host: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise CIMDError(f"client_id {url!r}: its host does not resolve ({exc})") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        # ::ffff:10.0.0.1 is 10.0.0.1
        addresses = [a.ipv4_mapped if a.version == 6 and a.ipv4_mapped else a for a in addresses]
        for address in addresses:
            if address.is_loopback and self.allow_loopback:
                continue
            if not address.is_global or address.is_multicast:
                raise CIMDError(
                    f"client_id {url!r}: its host resolves to a non-public address ({address}); metadata "
                    "documents are fetched only from public hosts"
                )
        if not addresses:
            raise CIMDError(f"client_id {url!r}: its host does not resolve")
        return addresses[0]


def _parse(client_id: str, body: bytes) -> OAuthClientInformationFull:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CIMDError(f"client_id {client_id!r}: the document is not JSON") from None
    if not isinstance(document, dict):
        raise CIMDError(f"client_id {client_id!r}: the document is not a JSON object")
    if document.get("client_id") != client_id:
        raise CIMDError(
            f"client_id {client_id!r}: the document's client_id is {document.get('client_id')!r}; it must be "
            "the document's own URL"
        )
    if not document.get("redirect_uris"):
        raise CIMDError(f"client_id {client_id!r}: the document lists no redirect_uris")
    for secret in ("client_secret", "client_secret_expires_at"):
        if secret in document:
            raise CIMDError(f"client_id {client_id!r}: a metadata document must not carry {secret}")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise CIMDError(
            f"client_id {client_id!r}: token_endpoint_auth_method {method!r} is not supported for metadata "
            "documents; use 'none' (public client with PKCE)"
        )
    try:
        return OAuthClientInformationFull.model_validate(
            {**document, "token_endpoint_auth_method": "none", "scope": document.get("scope") or " ".join(SCOPES)}
        )
    except ValidationError as exc:
        raise CIMDError(f"client_id {client_id!r}: the document is not valid client metadata ({exc})") from None


def _max_age(cache_control: str | None) -> int:
    if not cache_control:
        return DEFAULT_AGE
    directives = cache_control.lower()
    if "no-store" in directives or "no-cache" in directives:
        return 0
    found = re.search(r"max-age\s*=\s*(\d+)", directives)
    return min(int(found.group(1)), MAX_AGE) if found else DEFAULT_AGE


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
