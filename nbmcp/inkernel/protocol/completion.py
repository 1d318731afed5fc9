"""``completion/complete`` for the in-kernel server: what a client offers while its user types an argument.

- ``{name}`` of the ``nbmcp://objects/...`` templates: the exposed objects' names;
- prompt and template arguments named like columns (``column``, ``columns``, ``x_column``, ``col``): the columns
  of the frame another argument names (``name``, ``object``, ``frame``, ``table``), else of every exposed frame;
- prompt arguments named ``object``, ``frame``, ``table``, ``df`` or ``dataframe``: the exposed objects' names;
- what the user declared: ``@nbmcp.prompt(complete={"column": fn_or_list})``, same for ``@nbmcp.resource``.

A reference the server does not know, or a completer that fails, gives an empty completion, never an error:
clients ask on every keystroke. Columns are read off the event loop, each frame within a time limit
(:mod:`..calls.untrusted`): a frame whose schema hangs gives no columns, and holds up nobody.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.to_thread
from mcp.types import CompleteRequestParams, CompleteResult, Completion, PromptReference

from ... import frames
from ...sdk import add_request_handler
from ..calls.untrusted import ReadFailed, read_each, to_thread_limited
from ..registry import Completer, ExposedObject, Registry, RegistrySnapshot
from ..views.objects import OBJECT_TEMPLATES

__all__ = ["MAX_VALUES", "USER_COMPLETER_TIMEOUT", "Completions"]

MAX_VALUES = 100  # the spec's cap per response
USER_COMPLETER_TIMEOUT = 5.0
_COLUMN_ARGUMENT = re.compile(r"^(col|cols|column|columns|.+_columns?|columns?_.+)$")
_OBJECT_ARGUMENTS = ("object", "frame", "table", "df", "dataframe")
_OBJECT_CONTEXT_KEYS = ("name", *_OBJECT_ARGUMENTS)
_OBJECT_TEMPLATE_URIS = frozenset(OBJECT_TEMPLATES.values())


def _empty() -> CompleteResult:
    return CompleteResult(completion=Completion(values=[], total=0, has_more=False))


def _result(values: Iterable[Any], prefix: str | None) -> CompleteResult:
    """At most :data:`MAX_VALUES` distinct strings; with a ``prefix``, those that start with it (any case)."""
    seen: dict[str, None] = {}
    folded = prefix.casefold() if prefix is not None else None
    for value in values:
        text = str(value)
        if folded is None or text.casefold().startswith(folded):
            seen.setdefault(text)
    found = list(seen)
    return CompleteResult(
        completion=Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)
    )


class Completions:
    """Answers ``completion/complete`` from the registry; :meth:`serve` registers it (and so the capability)."""

    def __init__(
        self,
        registry: Registry,
        read_each: Callable[[dict[str, Callable[[], Any]], str], Awaitable[dict]] | None = None,
    ) -> None:
        """``read_each(reads, what)`` reads objects off the loop, each within a limit (the server's
        :meth:`~nbmcp.inkernel.views.objects.ObjectViews.read_each`; default: threads of anyio's)."""
        self.registry = registry
        self.read_each = read_each or _read_each_in_threads

    def serve(self, mcp: Any) -> None:
        add_request_handler(mcp, "completion/complete", CompleteRequestParams, self.handle)

    async def handle(self, ctx: Any, params: CompleteRequestParams) -> CompleteResult:
        try:
            return await self.complete(params)
        except Exception:  # a completer's failure is no reason to fail the client's keystroke
            return _empty()

    def _object_names(self, prefix: str) -> CompleteResult:
        """Exposed objects' names starting with ``prefix`` (any case): a bisection, not a scan."""
        names, folded = self.registry.object_names()
        key = prefix.casefold()
        start = bisect.bisect_left(folded, key)
        end = start
        while end < len(folded) and folded[end].startswith(key):
            end += 1
        found = names[start:end]
        return CompleteResult(
            completion=Completion(values=list(found[:MAX_VALUES]), total=len(found), has_more=len(found) > MAX_VALUES)
        )

    async def complete(self, params: CompleteRequestParams) -> CompleteResult:
        argument, prefix = params.argument.name, params.argument.value
        context = (params.context.arguments if params.context else None) or {}
        snapshot = self.registry.snapshot()
        if isinstance(params.ref, PromptReference):
            spec = snapshot.prompts.get(params.ref.name)
            if spec is None:
                return _empty()
            user = spec.complete.get(argument)
            if user is not None:
                return await _run_completer(user, prefix)
            if argument in _OBJECT_ARGUMENTS:
                return self._object_names(prefix)
        else:
            uri = params.ref.uri
            if uri in _OBJECT_TEMPLATE_URIS:
                if argument == "name":
                    return self._object_names(prefix)
                return _empty()
            spec = snapshot.resources.get(uri)
            if spec is None or not spec.enabled:
                return _empty()
            user = spec.complete.get(argument)
            if user is not None:
                return await _run_completer(user, prefix)
        if _COLUMN_ARGUMENT.match(argument):
            return _result(await self._columns(snapshot, context), prefix)
        return _empty()

    async def _columns(self, snapshot: RegistrySnapshot, context: dict[str, str]) -> list[str]:
        """Columns of the frame the other arguments name, else of every exposed frame (first seen first); a frame
        that went away, cannot say or does not answer in time gives none."""
        objects = {name: exposed for name, exposed in snapshot.objects.items() if exposed.enabled}
        named = [context[key] for key in _OBJECT_CONTEXT_KEYS if context.get(key) in objects]
        chosen = named or sorted(objects)
        found = await self.read_each(
            {name: functools.partial(_columns_of, objects[name]) for name in chosen}, "columns"
        )
        columns: list[str] = []
        for name in chosen:
            value = found.get(name)
            if isinstance(value, list):
                columns.extend(value)
        return columns


def _columns_of(exposed: ExposedObject) -> list[str] | None:
    value = exposed.get()
    if not frames.is_frame(value):
        return None
    return [str(column["name"]) for column in frames.schema(value) if not column.get("index")]


async def _read_each_in_threads(reads: dict[str, Callable[[], Any]], what: str) -> dict[str, Any | ReadFailed]:
    return await read_each(to_thread_limited, reads, what)


async def _run_completer(completer: Completer, prefix: str) -> CompleteResult:
    """A user's completer: a list filtered by the prefix, or ``fn(prefix)`` (bounded in time, off the loop)."""
    if isinstance(completer, (list, tuple)):
        return _result(completer, prefix)
    if inspect.iscoroutinefunction(completer):
        with anyio.fail_after(USER_COMPLETER_TIMEOUT):
            values = await completer(prefix)
    else:
        with anyio.fail_after(USER_COMPLETER_TIMEOUT):
            # abandon_on_cancel: a completer that hangs must not hold the client's request.
            values = await anyio.to_thread.run_sync(lambda: list(completer(prefix) or ()), abandon_on_cancel=True)
    return _result(values or (), None)
