"""A second client of a notebook's shared document (JupyterLab real-time collaboration), for tests and benchmarks.

It joins the notebook's collaboration room over the same WebSocket a JupyterLab tab uses
(``api/collaboration/session`` then ``api/collaboration/room/{format}:{type}:{file_id}``), with tornado's
WebSocket client and pycrdt's provider, so the document it holds is what every tab showing the notebook sees.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from jupyter_ydoc import YNotebook
from pycrdt import Doc, Provider
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


class TornadoChannel:
    """pycrdt's ``Channel`` over a tornado WebSocket client connection."""

    def __init__(self, ws: WebSocketClientConnection, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> TornadoChannel:
        return self

    async def __anext__(self) -> bytes:
        message = await self._ws.read_message()
        if message is None:
            raise StopAsyncIteration
        return message if isinstance(message, bytes) else message.encode()

    async def send(self, message: bytes) -> None:
        await self._ws.write_message(message, binary=True)

    async def recv(self) -> bytes:
        return await self.__anext__()


@contextlib.asynccontextmanager
async def open_notebook(url: str, token: str, path: str) -> AsyncIterator[tuple[YNotebook, str]]:
    """Open ``path`` (relative to the server root) as a collaborator, as a JupyterLab tab does; yields the
    synced ``YNotebook`` and its room id; leaving closes the connection (the server drops the room after
    ``YDocExtension.document_cleanup_delay`` when nobody else has it open)."""
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.put(
            f"{url}api/collaboration/session/{path}",
            json={"format": "json", "type": "notebook"},
            headers={"Authorization": f"token {token}"},
        )
        response.raise_for_status()
        session: dict[str, Any] = json.loads(response.text)
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    ws_url = url.replace("http://", "ws://", 1) + f"api/collaboration/room/{room}?sessionId={session['sessionId']}"
    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    ws = await websocket_connect(request, max_message_size=64 * 1024 * 1024)
    doc = Doc()
    notebook = YNotebook(doc)
    try:
        async with Provider(doc, TornadoChannel(ws, room)) as provider:
            await provider.synced.wait()
            yield notebook, room
    finally:
        ws.close()
