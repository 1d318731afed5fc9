"""Rich prompts: what a ``@nbmcp.prompt`` function returns, as the messages the client receives.

The SDK renders strings, its own ``Message`` objects, role/content dicts and bare content blocks; anything else
(the protocol's own ``PromptMessage``, a matplotlib figure, a PIL image, a frame) would reach the client as
JSON text. So the user's function is wrapped: its value is turned into SDK messages first, with values
converted like tool results (:func:`nbmcp.content.convert`: images sized for a model, frames as tables), and
:func:`nbmcp.embed_resource` markers read from the server's resources into embedded resources. A failing prompt
answers with its error, not the SDK's bare "Error rendering prompt".
"""

from __future__ import annotations

import base64
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from mcp import MCPError
from mcp.server.mcpserver.prompts.base import Message
from mcp.types import INTERNAL_ERROR, BlobResourceContents, EmbeddedResource, PromptMessage, TextResourceContents

from ... import content
from ..registry import EmbeddedResourceRef, PromptSpec
from ..views.objects import Base64Blob

__all__ = ["rendering"]

ReadResource = Callable[[str], Awaitable[list[Any] | None]]
"""``read(uri) -> [ReadResourceContents] | None``: the server's own resources (exposed objects' pages)."""


def rendering(spec: PromptSpec, read_resource: ReadResource, *, image_max_px: int) -> Callable[..., Any]:
    """An async function with ``spec.fn``'s signature returning SDK messages (what ``Prompt.from_function`` takes)."""
    fn = spec.fn

    @functools.wraps(fn)
    async def render(**kwargs: Any) -> list[Message]:
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(**kwargs)
            else:
                value = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
            return await _messages(value, read_resource, image_max_px)
        except MCPError:
            raise
        except Exception as exc:  # the SDK would say only "Error rendering prompt NAME"
            raise MCPError(
                code=INTERNAL_ERROR, message=f"prompt {spec.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    return render


async def _messages(value: Any, read_resource: ReadResource, image_max_px: int) -> list[Message]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    messages: list[Message] = []
    for item in items:
        if isinstance(item, Message):
            messages.append(item)
        elif isinstance(item, PromptMessage):
            messages.append(Message(item.content, role=item.role))
        elif isinstance(item, dict) and "role" in item and "content" in item:
            blocks = await _blocks(item["content"], read_resource, image_max_px)
            messages.extend(Message(block, role=item["role"]) for block in blocks)
        else:
            blocks = await _blocks(item, read_resource, image_max_px)
            messages.extend(Message(block, role="user") for block in blocks)
    return messages


async def _blocks(value: Any, read_resource: ReadResource, image_max_px: int) -> list[Any]:
    """MCP content blocks for one message's content."""
    if isinstance(value, EmbeddedResourceRef):
        return [await _embedded(value.uri, read_resource)]
    if isinstance(value, dict) and "type" in value:  # a content block written as a dict
        return [PromptMessage.model_validate({"role": "user", "content": value}).content]
    return list(content.convert(value, image_max_px=image_max_px).content)


async def _embedded(uri: str, read_resource: ReadResource) -> EmbeddedResource:
    contents = await read_resource(uri)
    if not contents:
        raise ValueError(f"embed_resource({uri!r}): no such resource; `nbmcp://objects` lists the exposed objects")
    # A page of rows comes as JSON and as markdown: the markdown table is the one a model reads best.
    first = next((c for c in contents if getattr(c, "mime_type", None) == "text/markdown"), contents[0])
    mime = getattr(first, "mime_type", None)
    data = first.content
    if isinstance(data, Base64Blob):  # the Arrow read: base64 already
        resource: Any = BlobResourceContents(uri=uri, blob=data.text, mime_type=mime or "application/octet-stream")
    elif isinstance(data, bytes):
        resource = BlobResourceContents(
            uri=uri, blob=base64.b64encode(data).decode(), mime_type=mime or "application/octet-stream"
        )
    else:
        resource = TextResourceContents(uri=uri, text=data, mime_type=mime or "text/plain")
    return EmbeddedResource(type="resource", resource=resource)
