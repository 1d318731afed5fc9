"""Change notifications of the in-kernel server, for both protocol eras.

The 2026 era listens through ``subscriptions/listen`` and is served by the SDK's subscription bus; the
handshake era has nothing that fans out, so live sessions and their ``resources/subscribe`` URIs are kept
here and told directly. Changes come from any thread (a cell, the registry); they are queued and flushed
on the transport's event loop, so a burst (a cell defining ten tools) sends one notification.

Only subscribed objects are fingerprinted, after every cell. A frame's fingerprint hashes a bounded sample of
its rows (:mod:`nbmcp.frames.digest`, which says what that can miss): milliseconds whatever its size. A
fingerprint is the user's code too (pickling, a lazy frame's sample): each runs on a thread of its own within
a time limit (:class:`~nbmcp.inkernel.calls.untrusted.LimitedCalls`), so an object that hangs holds up neither the
human's next cell nor a client's subscribe; its fingerprint is unknown (None) until it answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.subscriptions import PromptsListChanged
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from ... import frames
from ...sdk import add_request_handler, connection_of
from ..calls.untrusted import LimitedCalls
from ..oversight.activity import is_legacy

__all__ = ["Notifier", "fingerprint"]

LIST_KINDS = ("tools", "prompts", "resources")


def fingerprint(value: Any) -> str:
    """A digest that changes when ``value``'s content changes (frames hashed by content)."""
    if frames.is_frame(value):
        return frames.fingerprint(value)
    if frames.is_source(value):
        # a lazy source is a description of a query: hashing it would run it (DuckDB's repr) or pickle the data
        # behind it (a LazyFrame over a DataFrame); it changes when the name is bound to another object
        return f"source:{type(value).__qualname__}:{id(value)}"
    digest = hashlib.blake2b(digest_size=16)
    try:
        digest.update(pickle.dumps(value, protocol=5))
    except Exception:
        digest.update(repr(value).encode("utf-8", "replace"))
    digest.update(type(value).__qualname__.encode())
    return digest.hexdigest()


@dataclass
class _Subscription:
    """Who watches a URI, and the fingerprint of its object when last checked."""

    legacy_sessions: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    listeners: int = 0
    fingerprint: str | None = None


class Notifier:
    """Subscriptions and coalesced change notifications.

    ``watched_value(uri)`` returns the value whose changes a subscription to ``uri`` follows, as
    ``(key, value)`` — URIs with the same key share one fingerprint per check — or None if ``uri`` follows
    no object; it may raise ``LookupError``. ``lock`` is the server's.
    """

    def __init__(self, lock: threading.RLock, watched_value: Callable[[str], tuple[str, Any] | None]) -> None:
        self._lock = lock
        self._watched_value = watched_value
        self.bus = InMemorySubscriptionBus()
        self._legacy_sessions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._subscriptions: dict[str, _Subscription] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_lists: set[str] = set()
        self._pending_updates: set[str] = set()
        self._flush_scheduled = False
        self.fingerprints = LimitedCalls()  # keyed by the watched object's key

    def serve_subscribe_requests(self, mcp: Any) -> None:
        """Answer the handshake era's ``resources/subscribe`` and ``resources/unsubscribe`` on ``mcp``."""
        add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, self._on_subscribe)
        add_request_handler(mcp, "resources/unsubscribe", UnsubscribeRequestParams, self._on_unsubscribe)

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The event loop the transport runs on (None: stopped): notifications are sent from it."""
        self._loop = loop

    def subscribed_uris(self) -> list[str]:
        with self._lock:
            return list(self._subscriptions)

    # -- who listens ---------------------------------------------------------------------------

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Remember handshake-era sessions; count the 2026 era's ``subscriptions/listen`` streams."""
        connection = connection_of(ctx.session)
        if connection is not None and is_legacy(connection) and ctx.method != "initialize":
            with self._lock:
                self._legacy_sessions[connection] = ctx.session
        if ctx.method == "subscriptions/listen":
            return await self._listen(ctx, call_next)
        return await call_next(ctx)

    async def _listen(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        notifications = (ctx.params or {}).get("notifications") or {}
        uris = list(notifications.get("resourceSubscriptions") or [])
        with self._lock:
            for uri in uris:
                self._subscriptions.setdefault(uri, _Subscription()).listeners += 1
        for uri in uris:
            await self._prime_fingerprint(uri)
        try:
            return await call_next(ctx)
        finally:
            with self._lock:
                for uri in uris:
                    sub = self._subscriptions.get(uri)
                    if sub is not None:
                        sub.listeners -= 1
                        self._drop_if_unwatched(uri)

    async def _on_subscribe(self, ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        with self._lock:
            self._subscriptions.setdefault(uri, _Subscription()).legacy_sessions.add(ctx.session)
        await self._prime_fingerprint(uri)
        return EmptyResult()

    async def _on_unsubscribe(self, ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        with self._lock:
            sub = self._subscriptions.get(uri)
            if sub is not None:
                sub.legacy_sessions.discard(ctx.session)
                self._drop_if_unwatched(uri)
        return EmptyResult()

    def _drop_if_unwatched(self, uri: str) -> None:
        sub = self._subscriptions.get(uri)
        if sub is not None and not sub.listeners and not len(sub.legacy_sessions):
            del self._subscriptions[uri]

    # -- what changed --------------------------------------------------------------------------

    def _digest(self, uri: str) -> tuple[str, str | None] | None:
        try:
            watched = self._watched_value(uri)
        except LookupError:
            return uri, None
        if watched is None:
            return None
        key, value = watched
        return key, self.fingerprints.call(key, lambda: fingerprint(value))

    async def _prime_fingerprint(self, uri: str) -> None:
        digest = await anyio.to_thread.run_sync(self._digest, uri)
        if digest is None:
            return
        with self._lock:
            sub = self._subscriptions.get(uri)
            if sub is not None and sub.fingerprint is None:
                sub.fingerprint = digest[1]

    def check_objects(self) -> list[str]:
        """Fingerprint the subscribed objects; announce and return the URIs whose object changed."""
        with self._lock:
            if not self._subscriptions:
                return []
            watched = list(self._subscriptions.items())
        changed: list[str] = []
        by_key: dict[str, str | None] = {}
        for uri, sub in watched:
            try:
                target = self._watched_value(uri)
            except LookupError:
                digest = None
            else:
                if target is None:
                    continue
                key, value = target
                if key not in by_key:
                    by_key[key] = self.fingerprints.call(key, lambda value=value: fingerprint(value))
                digest = by_key[key]
            if digest != sub.fingerprint:
                sub.fingerprint = digest
                changed.append(uri)
        for uri in changed:
            self._queue(uri=uri)
        return changed

    def announce_list(self, kind: str) -> None:
        """Queue ``notifications/{kind}/list_changed`` (kind: tools, prompts or resources)."""
        assert kind in LIST_KINDS, kind
        self._queue(kind=kind)

    def _queue(self, *, kind: str | None = None, uri: str | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            if kind:
                self._pending_lists.add(kind)
            if uri:
                self._pending_updates.add(uri)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._flush()))
        except RuntimeError:  # loop closed between the check and the call
            self._flush_scheduled = False

    async def _flush(self) -> None:
        with self._lock:
            kinds, self._pending_lists = self._pending_lists, set()
            updates, self._pending_updates = self._pending_updates, set()
            self._flush_scheduled = False
            sessions = list(self._legacy_sessions.values())
            legacy_subs = {
                uri: list(self._subscriptions[uri].legacy_sessions) for uri in updates if uri in self._subscriptions
            }
        events: list[Any] = []
        if "tools" in kinds:
            events.append(ToolsListChanged())
        if "prompts" in kinds:
            events.append(PromptsListChanged())
        if "resources" in kinds:
            events.append(ResourcesListChanged())
        events += [ResourceUpdated(uri=uri) for uri in sorted(updates)]
        for event in events:
            await self.bus.publish(event)
        for session in sessions:
            try:
                if "tools" in kinds:
                    await session.send_tool_list_changed()
                if "prompts" in kinds:
                    await session.send_prompt_list_changed()
                if "resources" in kinds:
                    await session.send_resource_list_changed()
            except Exception:
                self._forget_session(session)
        for uri, subscribers in legacy_subs.items():
            for session in subscribers:
                try:
                    await session.send_resource_updated(uri)
                except Exception:
                    self._forget_session(session)

    def _forget_session(self, session: Any) -> None:
        with self._lock:
            for connection, known in list(self._legacy_sessions.items()):
                if known is session:
                    del self._legacy_sessions[connection]
            for sub in self._subscriptions.values():
                sub.legacy_sessions.discard(session)
