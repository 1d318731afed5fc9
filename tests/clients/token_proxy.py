"""A loopback reverse proxy that adds the bearer token, for a client that cannot send headers (the official
conformance suite has no option for them). It streams both ways (SSE arrives as produced) and passes Host and
Origin through unless they name the proxy itself, so nbmcp's DNS-rebinding checks still see what the client
sent."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from tests.conftest import free_port

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"authorization", b"te"}
OWN = {b"date", b"server"}  # uvicorn sets these on the proxy's own response


def proxy_app(upstream: str, token: str, own_port: int) -> Any:
    """An ASGI app forwarding every request to ``upstream`` (scheme://host:port) with ``token``."""
    up_host = upstream.split("://", 1)[1]
    own = {f"127.0.0.1:{own_port}", f"localhost:{own_port}"}
    client = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), trust_env=False)

    def rewrite(name: bytes, value: str) -> str:
        if name == b"host" and value in own:
            return up_host
        if name == b"origin" and value.split("://", 1)[-1] in own:
            return f"http://{up_host}"
        return value

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode(), rewrite(k, v.decode())) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        headers.append(("authorization", f"Bearer {token}"))
        query = scope.get("query_string", b"").decode()
        url = f"{upstream}{scope['path']}" + (f"?{query}" if query else "")
        request = client.build_request(scope["method"], url, headers=headers, content=body)
        response = await client.send(request, stream=True)
        try:
            kept = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.encode() not in HOP_BY_HOP | OWN]
            await send({"type": "http.response.start", "status": response.status_code, "headers": kept})
            with contextlib.suppress(httpx.HTTPError):  # upstream ended a stream (e.g. a GET stream at shutdown)
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    return app


@contextlib.contextmanager
def token_proxy(upstream_url: str, token: str) -> Iterator[str]:
    """Serve the proxy on a free loopback port; yields ``upstream_url`` with the proxy's origin."""
    scheme_host, _, path = upstream_url.partition("://")[2].partition("/")
    upstream = f"{upstream_url.split('://')[0]}://{scheme_host}"
    port = free_port()
    config = uvicorn.Config(
        proxy_app(upstream, token, port), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/{path}"
    finally:
        server.should_exit = True
        thread.join(10)
