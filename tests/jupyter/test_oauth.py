"""OAuth 2.1 on a real JupyterHub: nbmcp's Hub service (``nbmcp hub-config``'s lines) is the authorization
server, users' ``nbmcp`` endpoints are the protected resource.

The MCP SDK's OAuth client (``mcp.client.auth``) connects by URL alone: it discovers the service from the
401, registers (RFC 7591), and sends the person through the Hub login and nbmcp's consent page. One test
drives that login and consent in Debian's chromium (Playwright); the others follow the redirects with httpx
while signed in to the Hub (the DummyAuthenticator accepts any password), submitting the consent form as a
browser does. Every refusal is made with real tokens from that flow (or signed with the service's own key).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import jwt
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata, OAuthToken

from nbmcp.jupyter.hub.config import hub_config
from tests.browser import requires_chromium
from tests.hub_helpers import HubProcess, chp_command, jupyterhub
from tests.jupyter_helpers import free_port
from tests.mcp_results import text_of
from tests.oauth_helpers import (
    INIT,
    MCP_HEADERS,
    REDIRECT,
    Browser,
    Storage,
    authorize,
    eventually_refused,
    exchange,
    mcp_client,
    metadata,
    person_in_chromium,
    pkce,
    post_init,
    read_response,
    register,
    sdk_oauth,
    token_request,
    wait_for_service,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(180),
    pytest.mark.skipif(chp_command() is None, reason="configurable-http-proxy (npm) is not installed"),
]

ACCESS_TTL = 120


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    state = tmp_path_factory.mktemp("nbmcp-oauth-state")
    port = free_port()

    def config(url: str) -> str:
        return hub_config(url, port=port, state_dir=str(state), access_ttl=ACCESS_TTL)

    with jupyterhub(("alice", "bob"), extra_config=config) as hub:
        hub.oauth_state = state  # type: ignore[attr-defined]
        wait_for_service(hub)
        hub.start_server("alice")
        hub.start_server("bob")
        yield hub


@pytest.fixture(scope="module")
def alice_browser(hub: HubProcess) -> Iterator[Browser]:
    browser = Browser(hub, "alice")
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def notebook(hub: HubProcess) -> str:
    """alice opens analysis.ipynb (as JupyterLab does, through her server's REST API); its kernel id."""
    body = {"path": "analysis.ipynb", "type": "notebook", "name": "analysis.ipynb", "kernel": {"name": "python3"}}
    response = httpx.post(
        hub.user_url("alice") + "api/sessions",
        json=body,
        headers={"Authorization": f"token {hub.create_token('alice')}"},
        trust_env=False,
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["kernel"]["id"]


@pytest.fixture(scope="module")
def granted(hub: HubProcess, alice_browser: Browser, notebook: str) -> dict[str, Any]:
    """alice connects the SDK's OAuth client to her server by URL and allows read and execute."""
    url = hub.user_url("alice") + "nbmcp/mcp"
    provider, storage = sdk_oauth(url, alice_browser)

    async def run() -> str:
        async with mcp_client(url, provider) as client:
            result = await client.call_tool("execute", {"code": "6 * 7", "notebook": "analysis.ipynb"})
            assert not result.is_error, text_of(result)
            return text_of(result)

    answer = anyio.run(run)
    assert storage.tokens is not None and storage.client_info is not None
    return {"answer": answer, "tokens": storage.tokens, "client": storage.client_info, "url": url}


# ------------------------------------------------------------------------------------------ the flow


def test_oauth_without_credentials_is_a_401_naming_the_authorization_server(hub: HubProcess) -> None:
    url = hub.user_url("alice") + "nbmcp/mcp"
    response = post_init(url, None)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    prm_url = hub.user_url("alice") + "nbmcp/.well-known/oauth-protected-resource"
    assert challenge.startswith(f'Bearer resource_metadata="{prm_url}"'), challenge
    assert "access:servers!user=alice" in response.json()["message"]  # Hub tokens still work: it says so
    prm = httpx.get(prm_url, trust_env=False).json()
    assert prm["resource"] == hub.user_url("alice") + "nbmcp"
    assert prm["authorization_servers"] == [hub.url + "services/nbmcp"]
    assert set(prm["scopes_supported"]) == {"nbmcp:read", "nbmcp:execute"}
    asm = metadata(hub)
    assert asm["issuer"] == hub.url + "services/nbmcp"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["registration_endpoint"] and asm["revocation_endpoint"]
    # where the SDK's discovery finds it on a Hub (the RFC 8414 root path is the Hub's own page)
    oidc = httpx.get(hub.url + "services/nbmcp/.well-known/openid-configuration", trust_env=False).json()
    # ... with the members OpenID discovery requires, which the TypeScript SDK insists on there
    oidc_only = {"subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["EdDSA"]}
    assert oidc == asm | oidc_only | {"jwks_uri": hub.url + "services/nbmcp/keys"}


def test_oauth_sdk_client_connects_by_url_through_hub_login_and_consent(
    hub: HubProcess, granted: dict[str, Any], alice_browser: Browser
) -> None:
    assert granted["answer"].startswith("42"), granted["answer"]
    page = alice_browser.consent_pages[0]
    assert "Test Assistant" in page and "Signed in as <b>alice</b>" in page
    assert hub.user_url("alice") + "nbmcp/mcp" in page
    assert "nbmcp:execute" in page and "run code in your kernels" in page
    claims = jwt.decode(granted["tokens"].access_token, options={"verify_signature": False})
    assert claims["aud"] == hub.user_url("alice") + "nbmcp" and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == ACCESS_TTL
    assert set(claims["scope"].split()) == {"nbmcp:read", "nbmcp:execute"}
    # the audit trail in alice's server's log names the assistant's client
    assert f"nbmcp: OAuth client {granted['client'].client_id} (grant " in hub.log.read_text(errors="replace")


async def test_oauth_refresh_gives_a_working_token_and_hub_tokens_keep_working(
    hub: HubProcess, granted: dict[str, Any]
) -> None:
    client, tokens = granted["client"], granted["tokens"]
    secret = {"client_secret": client.client_secret} if client.client_secret else {}
    refreshed = token_request(
        hub, grant_type="refresh_token", refresh_token=tokens.refresh_token, client_id=client.client_id, **secret
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert fresh["refresh_token"] != tokens.refresh_token  # rotated
    assert post_init(granted["url"], fresh["access_token"]).status_code == 200
    granted["tokens"] = OAuthToken(**fresh)
    hub_token = hub.create_token("alice")
    assert post_init(granted["url"], hub_token).status_code == 200


def test_oauth_tokens_open_only_their_users_server(hub: HubProcess, granted: dict[str, Any]) -> None:
    access = granted["tokens"].access_token
    response = post_init(hub.user_url("bob") + "nbmcp/mcp", access)
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "issued for another resource" in response.json()["message"], response.json()
    # bob's own grant opens his server, not alice's
    bob = Browser(hub, "bob")
    try:
        client = register(hub)
        verifier, challenge = pkce()
        code = authorize(hub, bob, client, challenge, resource=hub.user_url("bob") + "nbmcp")
        bobs = exchange(hub, client, code, verifier).json()["access_token"]
    finally:
        bob.close()
    assert post_init(hub.user_url("bob") + "nbmcp/mcp", bobs).status_code == 200
    response = post_init(hub.user_url("alice") + "nbmcp/mcp", bobs)
    assert response.status_code == 401 and "another resource" in response.json()["message"], response.text


def test_oauth_a_token_with_the_wrong_audience_or_expired_or_forged_is_refused(
    hub: HubProcess, granted: dict[str, Any], tmp_path: Path
) -> None:
    """Tokens signed with the service's own key (read from its state dir, as only the service can)."""
    from nbmcp.jupyter.hub.tokens import SigningKey

    key = SigningKey(hub.oauth_state)  # type: ignore[attr-defined]
    issuer, url = hub.url + "services/nbmcp", granted["url"]
    mint = dict(issuer=issuer, client_id="c", scopes=["nbmcp:execute"], grant_id="g")
    cases = [
        (key.mint(subject="alice", audience=hub.url + "user/alice/other", ttl=60, **mint)[0], "another resource"),
        (key.mint(subject="alice", audience=hub.user_url("alice") + "nbmcp", ttl=-60, **mint)[0], "expired"),
        # bob's subject with alice's audience: the audience is right, the person is not
        (key.mint(subject="bob", audience=hub.user_url("alice") + "nbmcp", ttl=60, **mint)[0], "bob's"),
        # a key the service never had
        (
            SigningKey(tmp_path).mint(subject="alice", audience=hub.user_url("alice") + "nbmcp", ttl=60, **mint)[0],
            "not issued by this Hub",
        ),
    ]
    for token, says in cases:
        response = post_init(url, token)
        assert response.status_code == 401, response.text
        assert says in response.json()["message"], (says, response.json())
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_oauth_read_scope_lists_but_cannot_execute(hub: HubProcess, alice_browser: Browser) -> None:
    url = hub.user_url("alice") + "nbmcp/mcp"
    provider, storage = sdk_oauth(url, alice_browser, untick=("nbmcp:execute",))
    async with mcp_client(url, provider) as client:
        listing = await client.call_tool("list_notebooks", {})
        assert not listing.is_error, text_of(listing)
    assert storage.tokens is not None and storage.tokens.scope == "nbmcp:read"
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "execute", "arguments": {"code": "1"}},
    }
    response = httpx.post(
        url,
        json=call,
        headers={**MCP_HEADERS, "Authorization": f"Bearer {storage.tokens.access_token}"},
        trust_env=False,
    )
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="nbmcp:execute"' in challenge, challenge
    body = response.json()
    assert body["required_scope"] == "nbmcp:execute" and "allow 'nbmcp:execute'" in body["message"], body


def test_oauth_pkce_mismatch_replayed_code_and_redirect_mismatch_are_refused(
    hub: HubProcess, alice_browser: Browser
) -> None:
    client = register(hub)
    verifier, challenge = pkce()
    code = authorize(hub, alice_browser, client, challenge)
    wrong = exchange(hub, client, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
    # the code was spent by the failed attempt: a stolen code is good for one try
    assert exchange(hub, client, code, verifier).json()["error"] == "invalid_grant"

    code = authorize(hub, alice_browser, client, challenge)
    first = exchange(hub, client, code, verifier)
    assert first.status_code == 200, first.text
    replay = exchange(hub, client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    # a replayed code revokes what it was exchanged for
    refreshed = token_request(
        hub, grant_type="refresh_token", refresh_token=first.json()["refresh_token"], client_id=client["client_id"]
    )
    assert refreshed.status_code == 400, refreshed.text
    assert eventually_refused(hub.user_url("alice") + "nbmcp/mcp", first.json()["access_token"])

    # a redirect URI other than the registered one never reaches the consent page
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": "http://127.0.0.1:9/evil",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = httpx.get(metadata(hub)["authorization_endpoint"], params=params, trust_env=False)
    assert response.status_code == 400 and "redirect" in response.text.lower(), response.text
    # nor does a request without PKCE
    del params["code_challenge"]
    params["redirect_uri"] = REDIRECT
    response = httpx.get(metadata(hub)["authorization_endpoint"], params=params, trust_env=False)
    assert response.status_code in (302, 400), response.text
    if response.status_code == 302:
        assert "error=invalid_request" in response.headers["location"]


def test_oauth_alice_cannot_be_granted_bobs_server(hub: HubProcess, alice_browser: Browser) -> None:
    client = register(hub)
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "nbmcp:read",
        "resource": hub.user_url("bob") + "nbmcp",
    }
    url = str(httpx.URL(metadata(hub)["authorization_endpoint"], params=params))
    response = alice_browser.visit(url)
    assert response.status_code == 403 and "not your server" in response.text, response.text


def test_oauth_a_revoked_grant_stops_working(hub: HubProcess, alice_browser: Browser) -> None:
    client = register(hub)
    verifier, challenge = pkce()
    tokens = exchange(hub, client, authorize(hub, alice_browser, client, challenge), verifier).json()
    url = hub.user_url("alice") + "nbmcp/mcp"
    assert post_init(url, tokens["access_token"]).status_code == 200
    revoked = httpx.post(
        metadata(hub)["revocation_endpoint"],
        # the SDK's revocation handler requires the field even from a public client (an SDK defect)
        data={"token": tokens["refresh_token"], "client_id": client["client_id"], "client_secret": ""},
        trust_env=False,
    )
    assert revoked.status_code == 200, revoked.text
    refreshed = token_request(
        hub, grant_type="refresh_token", refresh_token=tokens["refresh_token"], client_id=client["client_id"]
    )
    assert refreshed.status_code == 400, refreshed.text
    assert eventually_refused(url, tokens["access_token"])


def test_oauth_the_person_sees_and_revokes_grants_on_the_grants_page(hub: HubProcess, alice_browser: Browser) -> None:
    client = register(hub, name="Assistant To Revoke")
    verifier, challenge = pkce()
    tokens = exchange(hub, client, authorize(hub, alice_browser, client, challenge), verifier).json()
    url = hub.user_url("alice") + "nbmcp/mcp"
    assert post_init(url, tokens["access_token"]).status_code == 200
    grants_url = hub.url + "services/nbmcp/grants"
    listing = alice_browser.visit(grants_url)
    assert listing.status_code == 200 and "Assistant To Revoke" in listing.text, listing.text
    row = listing.text[listing.text.index("Assistant To Revoke") :]
    csrf = re.search(r"name='csrf' value='([^']+)'", row)
    grant = re.search(r"name='grant' value='([^']+)'", row)
    assert csrf and grant
    # another session (bob's) cannot revoke alice's grant, even with its id
    bob = Browser(hub, "bob")
    try:
        bobs_page = bob.visit(grants_url).text  # bob signs in to the service, and sees only his own grants
        assert "bob&#x27;s server" in bobs_page and "Assistant To Revoke" not in bobs_page, bobs_page
        refused = bob.http.post(grants_url, data={"csrf": csrf.group(1), "grant": grant.group(1)})
        assert refused.status_code == 403, refused.text
    finally:
        bob.close()
    assert post_init(url, tokens["access_token"]).status_code == 200
    revoked = alice_browser.http.post(grants_url, data={"csrf": csrf.group(1), "grant": grant.group(1)})
    assert revoked.status_code == 303, revoked.text
    assert "Assistant To Revoke" not in alice_browser.http.get(grants_url).text
    assert eventually_refused(url, tokens["access_token"])


def test_oauth_a_person_who_denies_sends_access_denied(hub: HubProcess, alice_browser: Browser) -> None:
    client = register(hub)
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "state": "s-deny",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "nbmcp:read",
    }
    url = str(httpx.URL(metadata(hub)["authorization_endpoint"], params=params))
    query = parse_qs(urlsplit(alice_browser.open(url, decision="deny")).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s-deny"], query
    assert "code" not in query


@pytest.mark.parametrize("token", [None, "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"])
def test_oauth_a_refusal_keeps_the_connection_open_for_the_next_request(hub: HubProcess, token: str | None) -> None:
    """A 401 sent before the request body was read closed the connection; configurable-http-proxy, reusing it
    for the client's next request (the metadata discovery), answered that one 503."""
    target = urlsplit(hub.direct_url("alice"))
    body = json.dumps(INIT).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    post = (
        f"POST {target.path}nbmcp/mcp HTTP/1.1\r\nHost: {target.netloc}\r\n{auth}"
        f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    get = f"GET {target.path}nbmcp/.well-known/oauth-protected-resource HTTP/1.1\r\nHost: {target.netloc}\r\n\r\n"
    with socket.create_connection((target.hostname, target.port), timeout=30) as conn:
        conn.sendall(post)
        first = read_response(conn)
        assert first.startswith(b"HTTP/1.1 401"), first[:200]
        conn.sendall(get.encode())
        second = read_response(conn)
    assert second.startswith(b"HTTP/1.1 200"), second[:200]


def test_oauth_a_hub_sign_in_completes_only_in_the_browser_that_started_it(hub: HubProcess) -> None:
    """Login CSRF: a callback URL with a code someone else's sign-in produced must not sign this browser in."""
    client = register(hub)
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = str(httpx.URL(metadata(hub)["authorization_endpoint"], params=params))
    attacker = Browser(hub, "bob")
    try:
        response = attacker.http.get(url)
        while response.is_redirect and "/oauth_callback" not in response.headers["location"]:
            url = urljoin(url, response.headers["location"])
            response = attacker.http.get(url)
        callback = urljoin(url, response.headers["location"])
    finally:
        attacker.close()
    victim = httpx.get(callback, trust_env=False, follow_redirects=False)
    assert victim.status_code == 400 and "Sign-in did not complete" in victim.text, victim.text
    assert "nbmcp-oauth-session" not in victim.headers.get("set-cookie", "")


@requires_chromium
async def test_oauth_sdk_client_with_the_hub_login_and_consent_in_chromium(hub: HubProcess, notebook: str) -> None:
    """As a person does it: chromium signs in on the Hub's login page and clicks Allow on nbmcp's consent page;
    the SDK's OAuth client then runs code in alice's notebook."""
    url = hub.user_url("alice") + "nbmcp/mcp"
    async with person_in_chromium() as alice:

        async def redirect_handler(authorization_url: str) -> None:
            await alice.allow(authorization_url)

        async def callback_handler() -> AuthorizationCodeResult:
            query = parse_qs(urlsplit(alice.arrived[-1]).query)
            return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])

        metadata = OAuthClientMetadata(
            client_name="Chromium Assistant",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        )
        provider = OAuthClientProvider(url, metadata, Storage(), redirect_handler, callback_handler)
        async with mcp_client(url, provider) as client:
            result = await client.call_tool("execute", {"code": "20 + 22", "notebook": "analysis.ipynb"})
            assert not result.is_error and text_of(result).startswith("42"), text_of(result)
    consent_text = alice.consent_text
    text = consent_text[0]
    assert "Chromium Assistant" in text and "Signed in as alice" in text, text
    assert "run code in your kernels" in text and hub.user_url("alice") + "nbmcp/mcp" in text, text


def test_oauth_a_replayed_refresh_token_revokes_the_grant(hub: HubProcess, alice_browser: Browser) -> None:
    """Refresh tokens rotate; the old one coming back means two parties hold it, so the grant ends."""
    client = register(hub)
    verifier, challenge = pkce()
    first = exchange(hub, client, authorize(hub, alice_browser, client, challenge), verifier).json()
    refresh = dict(grant_type="refresh_token", client_id=client["client_id"])
    second = token_request(hub, refresh_token=first["refresh_token"], **refresh)
    assert second.status_code == 200, second.text
    url = hub.user_url("alice") + "nbmcp/mcp"
    assert post_init(url, second.json()["access_token"]).status_code == 200
    replay = token_request(hub, refresh_token=first["refresh_token"], **refresh)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    # the legitimate holder's newer tokens stop working too
    assert token_request(hub, refresh_token=second.json()["refresh_token"], **refresh).status_code == 400
    assert eventually_refused(url, second.json()["access_token"])
    # another client cannot spend (or burn) a code issued to this one
    code = authorize(hub, alice_browser, client, challenge)
    other = register(hub)
    stolen = exchange(hub, other, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant", stolen.text
    assert exchange(hub, client, code, verifier).status_code == 200
