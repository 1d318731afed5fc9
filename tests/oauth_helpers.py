"""The person, the assistant and raw OAuth requests for the OAuth tests on a real JupyterHub (``test_oauth``):
a browser signed in to the Hub that answers nbmcp's consent page, the MCP SDK's OAuth client, and the
authorization server's endpoints called by hand."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.hub_helpers import HubProcess

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the code is read from the redirect itself
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


def wait_for_service(hub: HubProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(hub.url + "services/nbmcp/keys", trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"nbmcp's Hub service did not start:\n{hub.log_text()}")


# ------------------------------------------------------------------------------------------ the browser


class Browser:
    """A person's browser: signed in to the Hub, following redirects up to the assistant's redirect URI."""

    def __init__(self, hub: HubProcess, user: str) -> None:
        self.hub = hub
        self.http = httpx.Client(trust_env=False, timeout=30, follow_redirects=False)
        login = self.http.get(hub.url + "hub/login")
        login.raise_for_status()
        signed_in = self.http.post(
            hub.url + "hub/login",
            data={"username": user, "password": "any", "_xsrf": self.http.cookies.get("_xsrf", "")},
        )
        assert signed_in.status_code == 302, signed_in.text
        self.consent_pages: list[str] = []

    def open(self, url: str, decision: str = "allow", untick: tuple[str, ...] = ()) -> str:
        """Open an authorization URL, answer the consent page (unticking ``untick``); the redirect URI with
        its query."""
        for _ in range(20):
            if url.startswith(REDIRECT):
                return url
            response = self.http.get(url)
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                continue
            assert response.status_code == 200, (response.status_code, response.text)
            self.consent_pages.append(response.text)
            action = re.search(r'<form method="post" action="([^"]+)"', response.text)
            csrf = re.search(r'name="csrf" value="([^"]+)"', response.text)
            assert action and csrf, response.text
            # what a browser submits: the ticked boxes that are not disabled, and the hidden fields
            ticked = re.findall(r'<input type="checkbox" name="scope" value="([^"]+)" checked>', response.text)
            hidden = re.findall(r'<input type="hidden" name="scope" value="([^"]+)">', response.text)
            scopes = [s for s in ticked if s not in untick] + hidden
            answer = self.http.post(
                urljoin(url, action.group(1).replace("&amp;", "&")),
                data={"csrf": csrf.group(1), "decision": decision, "scope": scopes},
            )
            assert answer.status_code == 303, answer.text
            url = urljoin(url, answer.headers["location"])
        raise AssertionError(f"too many redirects, last {url}")

    def visit(self, url: str) -> httpx.Response:
        """GET ``url``, following redirects (through the Hub's sign-in) to the page."""
        response = self.http.get(url)
        for _ in range(10):
            if not response.is_redirect:
                return response
            response = self.http.get(urljoin(str(response.url), response.headers["location"]))
        raise AssertionError(f"too many redirects from {url}")

    def close(self) -> None:
        self.http.close()


class Storage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def sdk_oauth(
    url: str, browser: Browser, untick: tuple[str, ...] = (), client_metadata_url: str | None = None
) -> tuple[OAuthClientProvider, Storage]:
    """The MCP SDK's OAuth client for ``url``; the person answers in ``browser``, unticking ``untick``;
    ``client_metadata_url``: the client's id is that metadata document's URL (CIMD) rather than registered."""
    storage = Storage()
    redirected: list[str] = []

    async def redirect_handler(authorization_url: str) -> None:
        redirected.append(await anyio.to_thread.run_sync(browser.open, authorization_url, "allow", untick))

    async def callback_handler() -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(redirected.pop()).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0])

    metadata = OAuthClientMetadata(
        client_name="Test Assistant",
        redirect_uris=[REDIRECT],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(
        url, metadata, storage, redirect_handler, callback_handler, client_metadata_url=client_metadata_url
    )
    return provider, storage


def mcp_client(url: str, provider: OAuthClientProvider) -> Client:
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(auth=provider)))


# ------------------------------------------------------------------------------------------ raw helpers


def post_init(url: str, token: str | None) -> httpx.Response:
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(url, json=INIT, headers=headers, trust_env=False, timeout=30)


def metadata(hub: HubProcess) -> dict[str, Any]:
    return httpx.get(hub.url + "services/nbmcp/.well-known/oauth-authorization-server", trust_env=False).json()


def register(hub: HubProcess, name: str = "Raw Client") -> dict[str, Any]:
    response = httpx.post(
        metadata(hub)["registration_endpoint"],
        json={
            "client_name": name,
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "nbmcp:read nbmcp:execute",
        },
        trust_env=False,
    )
    assert response.status_code == 201, response.text
    return response.json()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize(hub: HubProcess, browser: Browser, client: dict[str, Any], challenge: str, **extra: str) -> str:
    """A code for ``client``, consented in ``browser``, for alice's server unless ``resource`` says otherwise."""
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "nbmcp:read nbmcp:execute",
        "resource": hub.user_url("alice") + "nbmcp",
        **extra,
    }
    url = str(httpx.URL(metadata(hub)["authorization_endpoint"], params=params))
    query = parse_qs(urlsplit(browser.open(url)).query)
    assert "code" in query, query
    return query["code"][0]


def token_request(hub: HubProcess, **data: str) -> httpx.Response:
    return httpx.post(metadata(hub)["token_endpoint"], data=data, trust_env=False, timeout=30)


def exchange(hub: HubProcess, client: dict[str, Any], code: str, verifier: str) -> httpx.Response:
    return token_request(
        hub,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=client["client_id"],
        code_verifier=verifier,
    )


def eventually_refused(url: str, access_token: str, within: float = 10) -> bool:
    """Users' servers re-read the revoked grants every couple of seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = post_init(url, access_token)
        if response.status_code == 401:
            assert "revoked" in response.json()["message"], response.text
            return True
        time.sleep(0.5)
    return False


def read_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data  # closed
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


@dataclass
class PersonInChromium:
    """A person at a real chromium: signs in on the Hub's login page and clicks Allow on nbmcp's consent page."""

    page: Any  # playwright's async Page
    user: str = "alice"
    consent_text: list[str] = field(default_factory=list)  # each consent page's text, as the person read it
    arrived: list[str] = field(default_factory=list)  # the URLs the assistant's redirect URI got

    async def allow(self, authorization_url: str) -> str:
        """Sign in, read, allow: the redirect URL the assistant then gets (with its code)."""
        await self.page.goto(authorization_url)
        await self.page.fill("#username_input", self.user)
        await self.page.fill("#password_input", "any")
        await self.page.click("#login_submit")
        await self.page.get_by_role("button", name="Allow").wait_for()
        self.consent_text.append(await self.page.inner_text("body"))
        await self.page.get_by_role("button", name="Allow").click()
        await self.page.wait_for_url(REDIRECT + "**")
        return self.arrived[-1]


@contextlib.asynccontextmanager
async def person_in_chromium(user: str = "alice") -> AsyncIterator[PersonInChromium]:
    """Chromium with one page, whose visits to the assistant's redirect URI are noted and answered with a page."""
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            page.set_default_timeout(60_000)
            person = PersonInChromium(page, user)

            async def arrive(route: Any) -> None:
                person.arrived.append(route.request.url)
                await route.fulfill(body="You may close this window.", content_type="text/plain")

            await page.route(REDIRECT + "**", arrive)
            yield person
        finally:
            await browser.close()
