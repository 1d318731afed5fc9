"""The forwarder's keep-alive HTTP/1.1 client, against a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from nbmcp.jupyter.upstream import UpstreamPool
from nbmcp.transport import serve_in_thread

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

release = asyncio.Event()


async def app(scope, receive, send) -> None:
    """/echo answers the client's port and the body; /stream sends one event, waits, then ends."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await asyncio.wait_for(stream_gate(), 10)
        await send({"type": "http.response.body", "body": b"data: last\n\n"})
        return
    answer = f"{scope['client'][1]}:{body.decode()}".encode()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-kind", b"echo")]})
    await send({"type": "http.response.body", "body": answer})


gates: asyncio.Queue[None] | None = None


async def stream_gate() -> None:
    assert gates is not None
    await gates.get()


@pytest.fixture(scope="module")
def upstream():
    running = serve_in_thread(app)
    try:
        yield running
    finally:
        running.stop()


async def read_all(response) -> bytes:
    body = b"".join([chunk async for chunk in response.chunks()])
    await response.aclose()
    return body


async def test_requests_reuse_one_connection(upstream) -> None:
    pool = UpstreamPool()
    try:
        url = f"http://127.0.0.1:{upstream.port}/echo"
        first = await pool.request("POST", url, [("Content-Type", "text/plain")], b"one")
        assert first.status_code == 201 and first.header("X-Kind") == "echo"
        port_one, body_one = (await read_all(first)).decode().split(":")
        second = await pool.request("POST", url, [], b"two")
        port_two, body_two = (await read_all(second)).decode().split(":")
        assert (body_one, body_two) == ("one", "two")
        assert port_one == port_two  # the same keep-alive connection
    finally:
        await pool.aclose()


async def test_a_stream_arrives_as_it_is_produced(upstream) -> None:
    global gates
    gates = asyncio.Queue()
    loop = upstream.loop
    pool = UpstreamPool()
    try:
        response = await pool.request("GET", f"http://127.0.0.1:{upstream.port}/stream", [], b"")
        chunks = response.chunks()
        first = await asyncio.wait_for(anext(chunks), 5)  # before the server is allowed to finish
        assert first == b"data: first\n\n" and not response.complete
        loop.call_soon_threadsafe(gates.put_nowait, None)
        rest = b"".join([chunk async for chunk in chunks])
        assert rest == b"data: last\n\n" and response.complete
        await response.aclose()
    finally:
        await pool.aclose()


async def test_an_idle_connection_the_upstream_closed_is_replaced(upstream) -> None:
    pool = UpstreamPool()
    try:
        url = f"http://127.0.0.1:{upstream.port}/echo"
        port_one = (await read_all(await pool.request("POST", url, [], b"a"))).decode().split(":")[0]
        for connections in pool._idle.values():
            for connection in connections:
                connection.writer.transport.abort()  # as if the upstream's keep-alive timeout closed it
        answer = (await read_all(await pool.request("POST", url, [], b"b"))).decode()
        assert answer.endswith(":b") and answer.split(":")[0] != port_one
    finally:
        await pool.aclose()


async def test_a_dead_upstream_is_an_oserror() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = UpstreamPool()
    with pytest.raises(OSError):
        await pool.request("POST", f"http://127.0.0.1:{port}/mcp", [], b"{}")
