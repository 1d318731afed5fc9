"""One URL for the whole Hub (issue 23 item 4): ``{hub}/services/nbmcp/mcp`` takes each signed-in person to
their own server, on a real JupyterHub with nbmcp's service as ``nbmcp hub-config`` declares it.

The assistant is the MCP SDK's OAuth client connecting by that URL alone; the person signs in and consents
in a browser signed in to the Hub (``oauth_helpers.Browser``). carol is a user whose server never starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from mcp import MCPError

from nbmcp.client import connect
from nbmcp.jupyter.hub.config import hub_config
from tests.hub_helpers import HubProcess, chp_command, jupyterhub
from tests.jupyter_helpers import free_port
from tests.mcp_results import text_of
from tests.oauth_helpers import (
    MCP_HEADERS,
    Browser,
    authorize,
    exchange,
    mcp_client,
    pkce,
    post_init,
    register,
    sdk_oauth,
    wait_for_service,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(180),
    pytest.mark.skipif(chp_command() is None, reason="configurable-http-proxy (npm) is not installed"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    state = tmp_path_factory.mktemp("nbmcp-oauth-state")
    port = free_port()

    def config(url: str) -> str:
        return hub_config(url, port=port, state_dir=str(state), access_ttl=120)

    with jupyterhub(("alice", "bob", "carol"), extra_config=config) as hub:
        wait_for_service(hub)
        hub.start_server("alice")
        hub.start_server("bob")
        for name in ("alice", "bob"):  # each opens a notebook, as in JupyterLab
            body = {"path": "mine.ipynb", "type": "notebook", "name": "mine.ipynb", "kernel": {"name": "python3"}}
            response = httpx.post(
                hub.user_url(name) + "api/sessions",
                json=body,
                headers={"Authorization": f"token {hub.create_token(name)}"},
                trust_env=False,
                timeout=60,
            )
            response.raise_for_status()
        yield hub


def one_url(hub: HubProcess) -> str:
    return hub.url + "services/nbmcp/mcp"


def one_url_token(hub: HubProcess, user: str, scope: str = "nbmcp:read nbmcp:execute") -> str:
    """An access token for the one URL, consented by ``user`` in their browser."""
    browser = Browser(hub, user)
    try:
        client = register(hub)
        verifier, challenge = pkce()
        code = authorize(hub, browser, client, challenge, resource=one_url(hub), scope=scope)
        response = exchange(hub, client, code, verifier)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]
    finally:
        browser.close()


def test_oauth_one_url_without_credentials_names_its_own_resource_metadata(hub: HubProcess) -> None:
    response = post_init(one_url(hub), None)
    assert response.status_code == 401, response.text
    prm_url = hub.url + "services/nbmcp/.well-known/oauth-protected-resource/mcp"
    assert response.headers["www-authenticate"].startswith(f'Bearer resource_metadata="{prm_url}"')
    prm = httpx.get(prm_url, trust_env=False).json()
    assert prm["resource"] == one_url(hub)
    assert prm["authorization_servers"] == [hub.url + "services/nbmcp"]
    # a Hub API token is not one of the service's: it is told where such a token works
    refused = post_init(one_url(hub), hub.create_token("alice"))
    assert refused.status_code == 401 and "user/<name>/nbmcp/mcp" in refused.json()["message"], refused.text


async def test_oauth_one_url_takes_each_person_to_their_own_server(hub: HubProcess) -> None:
    """alice and bob connect the SDK's OAuth client to the same URL; each runs code in their own server."""
    who = "import os; os.environ['JUPYTERHUB_USER']"
    seen: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for user in ("alice", "bob"):
        browser = Browser(hub, user)
        provider, storage = sdk_oauth(one_url(hub), browser)
        try:
            async with mcp_client(one_url(hub), provider) as client:
                result = await client.call_tool("execute", {"code": who, "notebook": "mine.ipynb"})
                assert not result.is_error, text_of(result)
                seen[user] = text_of(result)
        finally:
            browser.close()
        assert storage.tokens is not None
        tokens[user] = storage.tokens.access_token
    assert "'alice'" in seen["alice"] and "'bob'" in seen["bob"], seen
    assert f"through {one_url(hub)}" in browser.consent_pages[0], browser.consent_pages[0]
    claims = jwt.decode(tokens["alice"], options={"verify_signature": False})
    assert claims["aud"] == one_url(hub) and claims["sub"] == "alice"
    # the consequence of that audience: it opens alice's server directly too, and never bob's
    assert post_init(hub.user_url("alice") + "nbmcp/mcp", tokens["alice"]).status_code == 200
    refused = post_init(hub.user_url("bob") + "nbmcp/mcp", tokens["alice"])
    assert refused.status_code == 401 and "alice's, and this is bob's server" in refused.json()["message"], refused.text


async def test_oauth_one_url_streams_progress_before_the_result(hub: HubProcess) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"
    token = one_url_token(hub, "alice")
    seen: list[tuple[float, str | None]] = []
    started = time.monotonic()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic() - started, message))

    async with connect(one_url(hub), token) as client:
        result = await client.call_tool(
            "execute", {"code": code, "notebook": "mine.ipynb"}, progress_callback=on_progress
        )
    finished = time.monotonic() - started
    assert not result.is_error and "first\nsecond" in text_of(result), text_of(result)
    assert seen, "no progress notification arrived"
    first_at, message = seen[0]
    assert "first" in (message or "")
    assert first_at < finished - 1.0, f"progress at {first_at:.2f}s, result at {finished:.2f}s: buffered"


async def test_oauth_one_url_says_when_the_persons_server_is_not_running(hub: HubProcess) -> None:
    token = one_url_token(hub, "carol")
    expected = f"carol's server is not running: start it at {hub.url}hub/spawn/carol"
    response = post_init(one_url(hub), token)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["id"] == 1 and expected in body["error"]["message"], body
    assert "_xsrf" not in response.text
    # an MCP client shows it as the answer to its initialize
    with pytest.raises(BaseException) as raised:
        async with connect(one_url(hub), token):
            pass
    errors = list(_leaves(raised.value))
    assert any(isinstance(e, MCPError) and expected in str(e) for e in errors), errors


def test_oauth_one_url_scope_refusals_point_back_to_the_one_url(hub: HubProcess) -> None:
    token = one_url_token(hub, "alice", scope="nbmcp:read")
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute", "arguments": {}}}
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    response = httpx.post(one_url(hub), json=call, headers=headers, trust_env=False, timeout=30)
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    prm_url = hub.url + "services/nbmcp/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{prm_url}"' in challenge, challenge  # re-consent here, not at the server
    assert 'error="insufficient_scope"' in challenge and 'scope="nbmcp:execute"' in challenge, challenge


def test_oauth_one_url_refuses_a_revoked_or_foreign_token_at_once(hub: HubProcess) -> None:
    browser = Browser(hub, "alice")
    try:
        client = register(hub)
        verifier, challenge = pkce()
        code = authorize(hub, browser, client, challenge, resource=one_url(hub))
        tokens = exchange(hub, client, code, verifier).json()
        # a token for alice's own server is not one for the one URL
        code = authorize(hub, browser, client, challenge)
        direct = exchange(hub, client, code, verifier).json()["access_token"]
    finally:
        browser.close()
    assert post_init(one_url(hub), tokens["access_token"]).status_code == 200
    refused = post_init(one_url(hub), direct)
    assert refused.status_code == 401 and "issued for another resource" in refused.json()["message"], refused.text
    revoked = httpx.post(
        hub.url + "services/nbmcp/revoke",
        data={"token": tokens["refresh_token"], "client_id": client["client_id"], "client_secret": ""},
        trust_env=False,
    )
    assert revoked.status_code == 200, revoked.text
    refused = post_init(one_url(hub), tokens["access_token"])  # the service knows at once: no waiting
    assert refused.status_code == 401 and "revoked" in refused.json()["message"], refused.text


def kernel_of(hub: HubProcess, user: str) -> str:
    """The id of the kernel of ``user``'s mine.ipynb (opened by the ``hub`` fixture)."""
    headers = {"Authorization": f"token {hub.create_token(user)}"}
    sessions = httpx.get(hub.user_url(user) + "api/sessions", headers=headers, trust_env=False, timeout=30).json()
    return next(s["kernel"]["id"] for s in sessions if s["path"] == "mine.ipynb")


async def test_oauth_one_url_reaches_each_kernel_of_the_persons_server(hub: HubProcess) -> None:
    """Item 2's per-kernel routes through item 4's one URL: the SDK's OAuth client connects by
    {one URL}/kernels/{id} alone (the one URL is the resource that covers it) and runs code in that kernel."""
    kernel = kernel_of(hub, "alice")
    token = one_url_token(hub, "alice")
    async with connect(one_url(hub), token) as client:  # the kernel's own nbmcp server, as a person starts it
        code = (
            "%load_ext nbmcp\nimport pandas as pd\nanswer_for_the_kernel_route = pd.DataFrame({'a': [1, 2]})\n"
            "%mcp expose answer_for_the_kernel_route"
        )
        started = await client.call_tool("execute", {"code": code, "notebook": "mine.ipynb"})
        assert not started.is_error, text_of(started)
    url = f"{one_url(hub)}/kernels/{kernel}"
    browser = Browser(hub, "alice")
    provider, storage = sdk_oauth(url, browser)
    try:
        async with mcp_client(url, provider) as client:
            result = await client.call_tool("list_objects", {})
            assert not result.is_error and "answer_for_the_kernel_route" in text_of(result), text_of(result)
            assert result.meta["io.modelcontextprotocol/serverInfo"]["name"] == "nbmcp"  # the kernel's own server
    finally:
        browser.close()
    assert storage.tokens is not None
    token = storage.tokens.access_token
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == one_url(hub)
    # bob's kernel id with alice's token goes to alice's server, which has no such kernel
    bobs = post_init(f"{one_url(hub)}/kernels/{kernel_of(hub, 'bob')}", token)
    assert bobs.status_code == 404, bobs.text
    not_an_id = post_init(f"{one_url(hub)}/kernels/not_a_kernel", token)
    assert not_an_id.status_code == 404 and "is not a kernel id" in not_an_id.text, not_an_id.text
    assert post_init(f"{one_url(hub)}/kernels/{kernel}", None).status_code == 401


def test_oauth_refusal_names_the_hubs_full_token_page(hub: HubProcess) -> None:
    """Item 5: "Create one at /hub/token" gave a path; a client far from the Hub needs its URL."""
    for token in (None, "not-a-token"):
        response = post_init(hub.user_url("alice") + "nbmcp/mcp", token)
        assert response.status_code == 401, response.text
        assert f"Create one at {hub.url}hub/token" in response.json()["message"], response.json()


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups (duck-typed: the builtin group is Python 3.11+)."""
    inner = getattr(error, "exceptions", None)
    if inner:
        for each in inner:
            yield from _leaves(each)
    else:
        yield error
