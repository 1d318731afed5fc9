"""``open_endpoint``, the one HTTP endpoint builder: bind (a taken port may give way), the Host/Origin/token
checks against the bound address, the URL (IPv6 bracketed), the connection file and its token."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbmcp.transport import open_endpoint

pytestmark = pytest.mark.timeout(60)
TOKEN = "endpoint-test-token"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def get(url: str, token: str | None = TOKEN, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(trust_env=False, timeout=10) as http:
        return http.get(url, headers=headers)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_endpoint_checks_host_origin_and_token_of_the_bound_address(host: str) -> None:
    endpoint = open_endpoint(hello, host=host, port=0, token=TOKEN, allowed_origins=["https://my.app"])
    running = endpoint.serve_in_thread()
    try:
        shown = f"[{host}]" if ":" in host else host
        assert endpoint.url == f"http://{shown}:{endpoint.port}/mcp"
        assert get(endpoint.url).text == "hello"
        assert get(endpoint.url, token=None).status_code == 401
        assert get(endpoint.url, token="wrong").status_code == 401
        assert get(endpoint.url, Host=f"evil.example:{endpoint.port}").status_code == 403
        assert get(endpoint.url, Origin=f"http://{shown}:{endpoint.port}").status_code == 200  # its own
        assert get(endpoint.url, Origin="https://my.app").status_code == 200
        assert get(endpoint.url, Origin="https://evil.example").status_code == 403
    finally:
        running.stop()


def test_without_own_origins_every_browser_origin_is_refused() -> None:
    endpoint = open_endpoint(hello, host="127.0.0.1", port=0, token=TOKEN, own_origins=False)
    running = endpoint.serve_in_thread()
    try:
        assert get(endpoint.url).status_code == 200
        assert get(endpoint.url, Origin=f"http://127.0.0.1:{endpoint.port}").status_code == 403
    finally:
        running.stop()


def test_a_taken_port_gives_way_only_when_asked() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="pick another port"):
            open_endpoint(hello, host="127.0.0.1", port=port, token=TOKEN)
        endpoint = open_endpoint(hello, host="127.0.0.1", port=port, token=TOKEN, any_port_if_taken=True)
        try:
            assert endpoint.requested_port == port != endpoint.port
        finally:
            endpoint.close()


def test_beyond_loopback_a_token_is_required() -> None:
    with pytest.raises(ValueError, match="token is required"):
        open_endpoint(hello, host="0.0.0.0", port=0, token="")


def test_the_connection_file_follows_the_token_and_goes_with_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    endpoint = open_endpoint(hello, host="127.0.0.1", port=0, token=TOKEN)
    running = endpoint.serve_in_thread()
    try:
        path = endpoint.publish("test-endpoint", kind="test")
        assert path == tmp_path / "nbmcp-test-endpoint.json" and path.stat().st_mode & 0o777 == 0o600
        assert json.loads(path.read_text())["token"] == TOKEN
        endpoint.set_token("rotated-token")
        written = json.loads(path.read_text())
        assert (written["token"], written["url"], written["kind"]) == ("rotated-token", endpoint.url, "test")
        assert get(endpoint.url).status_code == 401 and get(endpoint.url, token="rotated-token").status_code == 200
    finally:
        running.stop()
        endpoint.close()
    assert not path.exists()
