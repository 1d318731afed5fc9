"""OAuth on a real JupyterHub, continued: Client ID Metadata Documents (a client id that is the https URL of
the client's own metadata, MCP authorization 2025-11-25), the TypeScript SDK's OAuth client, and grants that
survive a restart of the service.

The client's "web server" is a real HTTPS server on 127.0.0.1 (``cimd_helpers``); the Hub's service is told
to trust its certificate and, as only tests and single-machine trials should, to fetch from loopback
(``NBMCP_OAUTH_CIMD_ALLOW_LOOPBACK=1``). Without that setting a loopback document is refused: one test shows
it with the service's own fetcher. The TypeScript SDK v2 client (npm ``@modelcontextprotocol/client``) connects
by URL alone: its ``auth()`` hands the authorization URL to the test, which signs alice in and consents in
chromium (Playwright) or, for the other era, with httpx as the Python tests do; then it calls a tool.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import psutil
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from nbmcp.jupyter.hub.cimd import MAX_BYTES, CIMDError, ClientMetadataDocuments
from nbmcp.jupyter.hub.config import hub_config
from tests.browser import requires_chromium
from tests.cimd_helpers import DocumentServer, document_server
from tests.hub_helpers import HubProcess, chp_command, jupyterhub
from tests.jupyter_helpers import free_port
from tests.mcp_results import text_of
from tests.node import NODE, NODE_DIR, requires_ts_sdk
from tests.oauth_helpers import (
    REDIRECT,
    Browser,
    exchange,
    mcp_client,
    metadata,
    person_in_chromium,
    pkce,
    post_init,
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

DOC = "/clients/assistant.json"


def document(server: DocumentServer, path: str = DOC, **changes: Any) -> bytes:
    body = {
        "client_id": server.url(path),
        "client_name": "CIMD Assistant",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **changes,
    }
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DocumentServer, Path]]:
    with document_server(tmp_path_factory.mktemp("cimd-tls")) as served:
        served[0].routes[DOC] = (200, {"Cache-Control": "max-age=60"}, document(served[0]))
        yield served


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, docs: tuple[DocumentServer, Path]) -> Iterator[HubProcess]:
    state = tmp_path_factory.mktemp("nbmcp-oauth-state")
    port = free_port()

    def config(url: str) -> str:
        settings = {"NBMCP_OAUTH_CIMD_ALLOW_LOOPBACK": "1", "NBMCP_OAUTH_CIMD_CA_FILE": str(docs[1])}
        return hub_config(url, port=port, state_dir=str(state), access_ttl=120) + (
            f'c.JupyterHub.services[-1]["environment"].update({settings!r})\n'
            # the Hub restarts a managed service that died at its next poll: every second here, not every 30 s
            "from jupyterhub.services.service import _ServiceSpawner\n"
            "_ServiceSpawner.poll_interval.default_value = 1\n"
        )

    with jupyterhub(("alice",), extra_config=config) as hub:
        hub.oauth_state = state  # type: ignore[attr-defined]
        wait_for_service(hub)
        hub.start_server("alice")
        yield hub


@pytest.fixture(scope="module")
def notebook(hub: HubProcess) -> str:
    """alice opens cimd.ipynb (as JupyterLab does, through her server's REST API); its kernel id."""
    body = {"path": "cimd.ipynb", "type": "notebook", "name": "cimd.ipynb", "kernel": {"name": "python3"}}
    headers = {"Authorization": f"token {hub.create_token('alice')}"}
    response = httpx.post(
        hub.user_url("alice") + "api/sessions", json=body, headers=headers, trust_env=False, timeout=60
    )
    response.raise_for_status()
    return response.json()["kernel"]["id"]


@pytest.fixture(scope="module")
def alice_browser(hub: HubProcess) -> Iterator[Browser]:
    browser = Browser(hub, "alice")
    yield browser
    browser.close()


def authorize_url(hub: HubProcess, client_id: str, challenge: str = "x" * 43, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "nbmcp:read nbmcp:execute",
        "resource": hub.user_url("alice") + "nbmcp",
        **extra,
    }
    return str(httpx.URL(metadata(hub)["authorization_endpoint"], params=params))


# ------------------------------------------------------------------------------------------ CIMD


async def test_oauth_cimd_sdk_client_connects_with_its_metadata_document_url(
    hub: HubProcess, docs: tuple[DocumentServer, Path], alice_browser: Browser, notebook: str
) -> None:
    server = docs[0]
    assert metadata(hub)["client_id_metadata_document_supported"] is True
    url = hub.user_url("alice") + "nbmcp/mcp"
    provider, storage = sdk_oauth(url, alice_browser, client_metadata_url=server.url(DOC))
    async with mcp_client(url, provider) as client:
        result = await client.call_tool("execute", {"code": "6 * 7", "notebook": "cimd.ipynb"})
        assert not result.is_error, text_of(result)
        assert text_of(result).startswith("42"), text_of(result)
    assert storage.client_info is not None and storage.client_info.client_id == server.url(DOC)  # not registered
    assert storage.tokens is not None and storage.tokens.refresh_token
    page = alice_browser.consent_pages[-1]
    # the name is the document's claim; the page also shows where the document lives
    assert "CIMD Assistant" in page and "127.0.0.1:" in page, page
    assert server.fetches[DOC] == 1  # /authorize and /token used the cached document (max-age=60)
    refreshed = token_request(
        hub, grant_type="refresh_token", refresh_token=storage.tokens.refresh_token, client_id=server.url(DOC)
    )
    assert refreshed.status_code == 200, refreshed.text


@pytest.mark.parametrize(
    ("path", "status", "body", "said"),
    [
        ("/mismatch.json", 200, "mismatch", "must be the document's own URL"),
        ("/large.json", 200, "large", f"larger than {MAX_BYTES} bytes"),
        ("/not-json.json", 200, b"<html>client</html>", "not JSON"),
        ("/no-redirects.json", 200, "no-redirects", "lists no redirect_uris"),
        ("/secret.json", 200, "secret", "must not carry client_secret"),
        ("/moved.json", 302, b"", "redirect"),
        ("/missing.json", 404, b"", "HTTP 404"),
    ],
)
def test_oauth_cimd_a_document_that_cannot_be_used_is_refused_saying_why(
    hub: HubProcess, docs: tuple[DocumentServer, Path], path: str, status: int, body: Any, said: str
) -> None:
    server = docs[0]
    headers = {"Location": server.url(DOC)} if status == 302 else {}
    content = {
        "mismatch": document(server, path, client_id=server.url(DOC)),
        "large": document(server, path, client_name="x" * MAX_BYTES),
        "no-redirects": document(server, path, redirect_uris=[]),
        "secret": document(server, path, client_secret="s3cret"),
    }.get(body, body)
    server.routes[path] = (status, headers, content)
    response = httpx.get(authorize_url(hub, server.url(path)), trust_env=False, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client" and said in response.json()["error_description"], response.text


def test_oauth_cimd_a_redirect_uri_not_in_the_document_is_refused(
    hub: HubProcess, docs: tuple[DocumentServer, Path]
) -> None:
    server = docs[0]
    url = authorize_url(hub, server.url(DOC), redirect_uri="http://127.0.0.1:9/elsewhere")
    response = httpx.get(url, trust_env=False, timeout=30)
    assert response.status_code == 400, response.text
    assert "not registered for client" in response.json()["error_description"], response.text


async def test_oauth_cimd_without_the_test_setting_loopback_and_private_hosts_are_refused(
    docs: tuple[DocumentServer, Path],
) -> None:
    server, cert = docs
    production = ClientMetadataDocuments(ca_file=str(cert))
    for url in (server.url(DOC), "https://10.1.2.3/client.json", "https://[::ffff:127.0.0.1]/client.json"):
        with pytest.raises(CIMDError, match="non-public address"):
            await production.client(url)
    with pytest.raises(CIMDError, match="over https"):
        await production.client(server.url(DOC).replace("https:", "http:"))
    fetched = server.fetches[DOC]
    assert (await ClientMetadataDocuments(allow_loopback=True, ca_file=str(cert)).client(server.url(DOC))).client_id
    assert server.fetches[DOC] == fetched + 1


# ------------------------------------------------------------------------------------------ TypeScript SDK


@pytest.fixture(scope="module")
def ts_oauth_script() -> Path:
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "client").exists():
        pytest.skip(f"@modelcontextprotocol/client is not installed in {NODE_DIR} (.ci/run installs it)")
    # ESM resolves packages from the script's directory: run a copy beside the installed modules
    script = NODE_DIR / "nbmcp_oauth_client.mjs"
    script.write_text((Path(__file__).parent.parent / "clients" / "ts" / "oauth_client.mjs").read_text())
    return script


async def run_ts_client(script: Path, spec: dict[str, Any], consent: Any) -> dict[str, Any]:
    """Run the TS client; ``consent(authorization_url)`` returns the redirect URI the browser arrived at."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    async with await anyio.open_process([str(NODE), str(script), json.dumps(spec)], env=env, stderr=None) as process:
        assert process.stdout is not None and process.stdin is not None
        lines = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(120):
            first = json.loads(await lines.receive_until(b"\n", 1 << 20))
            await process.stdin.send((await consent(first["authorize"])).encode() + b"\n")
            last = json.loads(await lines.receive_until(b"\n", 1 << 20))
            assert await process.wait() == 0
    return {"authorize": first["authorize"], **last}


def spec_for(hub: HubProcess, era: str, **extra: Any) -> dict[str, Any]:
    return {
        "era": era,
        "url": hub.user_url("alice") + "nbmcp/mcp",
        "tool": "execute",
        "arguments": {"code": "6 * 7", "notebook": "cimd.ipynb"},
        "redirect": REDIRECT,
        "clientName": f"TS Assistant ({era})",
        **extra,
    }


@requires_ts_sdk
@requires_chromium
async def test_oauth_ts_sdk_client_signs_in_and_consents_in_chromium_legacy_era(
    hub: HubProcess, notebook: str, ts_oauth_script: Path
) -> None:
    async with person_in_chromium() as alice:
        out = await run_ts_client(ts_oauth_script, spec_for(hub, "legacy"), alice.allow)
    consent_text = alice.consent_text
    assert out["era"] == "legacy" and out["version"] != "2026-07-28", out
    assert not out["result"].get("isError") and out["result"]["content"][0]["text"].startswith("42"), out
    assert out["refreshToken"] and not out["clientId"].startswith("https://"), out  # registered (RFC 7591)
    assert "code_challenge_method=S256" in out["authorize"] and "resource=" in out["authorize"], out
    assert "TS Assistant (legacy)" in consent_text[0] and "Signed in as alice" in consent_text[0], consent_text


@requires_ts_sdk
async def test_oauth_ts_sdk_client_with_a_metadata_document_url_modern_era(
    hub: HubProcess,
    notebook: str,
    docs: tuple[DocumentServer, Path],
    alice_browser: Browser,
    ts_oauth_script: Path,
) -> None:
    server = docs[0]

    async def consent(url: str) -> str:
        return await anyio.to_thread.run_sync(alice_browser.open, url)

    spec = spec_for(hub, "modern", clientMetadataUrl=server.url(DOC))
    out = await run_ts_client(ts_oauth_script, spec, consent)
    assert out["era"] == "modern" and out["version"] == "2026-07-28", out
    assert not out["result"].get("isError") and out["result"]["content"][0]["text"].startswith("42"), out
    assert out["clientId"] == server.url(DOC) and out["refreshToken"], out
    assert "CIMD Assistant" in alice_browser.consent_pages[-1]


# ------------------------------------------------------------------------------------------ restart


def service_process(hub: HubProcess) -> psutil.Process:
    for child in psutil.Process(hub.proc.pid).children(recursive=True):
        with suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "nbmcp.jupyter.hub" in " ".join(child.cmdline()):
                return child
    raise AssertionError(f"nbmcp's Hub service is not running:\n{hub.log_text()}")


def restart_service(hub: HubProcess) -> None:
    """Kill the service as a crash would; the Hub starts it again (it polls its managed services)."""
    old = service_process(hub)
    old.send_signal(signal.SIGKILL)  # the Hub reaps it when it polls
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if service_process(hub).pid != old.pid:
                wait_for_service(hub)
                return
        except AssertionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the Hub did not restart nbmcp's service:\n{hub.log_text()}")


def register_confidential(hub: HubProcess) -> dict[str, Any]:
    body = {
        "client_name": "Confidential",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_post",
    }
    response = httpx.post(metadata(hub)["registration_endpoint"], json=body, trust_env=False)
    assert response.status_code == 201, response.text
    return response.json()


def client_authenticates(hub: HubProcess, client: dict[str, Any], secret: str) -> bool:
    # client authentication comes before the (bogus) refresh token is looked at: the error says which failed
    answer = token_request(
        hub, grant_type="refresh_token", refresh_token="x", client_id=client["client_id"], client_secret=secret
    ).json()
    assert answer["error"] in ("invalid_client", "invalid_grant"), answer
    return answer["error"] == "invalid_grant"


def test_oauth_grants_refresh_tokens_and_revocations_survive_a_restart_of_the_service(
    hub: HubProcess, alice_browser: Browser
) -> None:
    url = hub.user_url("alice") + "nbmcp/mcp"
    tokens: dict[str, dict[str, Any]] = {}
    clients: dict[str, dict[str, Any]] = {}
    for name in ("kept", "revoked"):
        clients[name] = register(hub, name=f"Assistant {name}")
        verifier, challenge = pkce()
        redirect = alice_browser.open(authorize_url(hub, clients[name]["client_id"], challenge))
        code = parse_qs(urlsplit(redirect).query)["code"][0]
        tokens[name] = exchange(hub, clients[name], code, verifier).json()
    revoked = httpx.post(
        metadata(hub)["revocation_endpoint"],
        data={"token": tokens["revoked"]["refresh_token"], "client_id": clients["revoked"]["client_id"]}
        | {"client_secret": ""},
        trust_env=False,
    )
    assert revoked.status_code == 200, revoked.text
    confidential = register_confidential(hub)
    saved = Path(hub.oauth_state) / "grants.json"  # type: ignore[attr-defined]
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    text = saved.read_text()
    for name in ("kept", "revoked"):  # what an attacker who reads the file cannot present
        assert tokens[name]["refresh_token"] not in text and tokens[name]["access_token"] not in text
    assert confidential["client_id"] in text and confidential["client_secret"] not in text  # derived, not kept

    restart_service(hub)

    # the kept grant's access token still opens alice's server (same signing key) and its refresh token works
    assert post_init(url, tokens["kept"]["access_token"]).status_code == 200
    refresh = {"grant_type": "refresh_token", "client_id": clients["kept"]["client_id"]}
    refreshed = token_request(hub, refresh_token=tokens["kept"]["refresh_token"], **refresh)
    assert refreshed.status_code == 200, refreshed.text
    assert post_init(url, refreshed.json()["access_token"]).status_code == 200
    # the revoked grant stays revoked: its refresh token is refused and servers are still told of it
    again = token_request(
        hub,
        grant_type="refresh_token",
        refresh_token=tokens["revoked"]["refresh_token"],
        client_id=clients["revoked"]["client_id"],
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    listed = httpx.get(hub.url + "services/nbmcp/keys", trust_env=False).json()["revoked"]
    assert len(listed) == 1, listed
    refused = post_init(url, tokens["revoked"]["access_token"])
    assert refused.status_code == 401 and "revoked" in refused.json()["message"], refused.text
    # the rotated-out refresh token is still recognised after the restart: a replay ends the grant
    replay = token_request(hub, refresh_token=tokens["kept"]["refresh_token"], **refresh)
    assert replay.status_code == 400, replay.text
    assert token_request(hub, refresh_token=refreshed.json()["refresh_token"], **refresh).status_code == 400
    # a confidential client's secret works after the restart though the file never held it
    assert client_authenticates(hub, confidential, confidential["client_secret"])
    assert not client_authenticates(hub, confidential, "not-the-secret")


async def test_oauth_open_registration_is_bounded_and_keeps_clients_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may register (RFC 7591): the grants file must not grow without end; a client in use stays."""
    from mcp.shared.auth import OAuthClientInformationFull

    from nbmcp.jupyter.hub import grants as grants_module
    from nbmcp.jupyter.hub.store import GrantsFile
    from nbmcp.jupyter.hub.tokens import SigningKey

    monkeypatch.setattr(grants_module, "MAX_CLIENTS", 2)

    def make() -> grants_module.Grants:
        key = SigningKey(tmp_path)
        hub = "http://127.0.0.1:1/"
        return grants_module.Grants(
            key, issuer=hub + "services/nbmcp", hub_url=hub, access_ttl=60, refresh_ttl=600, store=GrantsFile(tmp_path)
        )

    grants = make()
    for number in range(3):
        client = OAuthClientInformationFull(
            client_id=f"c{number}", client_id_issued_at=number, redirect_uris=[REDIRECT]
        )
        await grants.register_client(client)
        if number == 0:  # c0 is in use: alice granted it access
            grants.grants["g0"] = grants_module.Grant("alice", "c0", "c0", ["nbmcp:read"], "r", 0.0)
    assert sorted(grants.clients) == ["c0", "c2"]  # c1 was the oldest idle one
    assert sorted(make().clients) == ["c0", "c2"]  # and so it is after a restart
