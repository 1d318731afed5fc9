"""The call pipeline of the in-kernel server: from an MCP ``tools/call`` to the user's function and back.

Each tool is served through a shim with the user's signature (so the SDK builds the schema from their type
hints and docstring) that asks for approval where the tool requires it, runs the function — on a worker
thread with a timeout, on the kernel's main thread between cells, or awaited — captures what it prints and
displays, and converts the value, or the error, to MCP content within the output budget. Errors become
results the client can read (the SDK alone would answer only "Error executing tool NAME").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, cast

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, Field

from ... import content
from ...exceptions import ApprovalDenied, ToolTimeout
from ..oversight.activity import current_client, mark_outcome
from ..oversight.approvals import NobodyToAsk
from ..protocol import logs, structured
from ..registry import ToolSpec
from . import capture
from .background import BackgroundExecutes
from .interaction import ClientUnsupported, InputPending, ToolContext
from .workers import ToolBusy, WorkerPool, current_client_key

__all__ = ["Approver", "CallPipeline", "MainThreadRunner"]

Approver = Callable[[str, dict[str, Any], str], Awaitable[bool]]
"""``approver(tool, arguments, client) -> approved``: asks the notebook's owner (the approval panel)."""
MainThreadRunner = Callable[[Callable[[], Any]], concurrent.futures.Future[Any]]
"""Runs a callable on the kernel's main thread between cells (given by the IPython extension)."""

APPROVAL_POLICIES = ("ask", "all", "none", "client")
HIDDEN_CONTEXT = "nbmcp_request_context"  # a Context parameter every shim has: approvals may ask the client
ApprovalListener = Callable[[str, str, str, bool, str], None]
"""``listener(tool, client, decided_by, approved, reason)``: one approval decision (for the audit log)."""


class CallPipeline:
    """Runs tool calls. ``approver`` and ``approval_policy`` may change while the server runs (the panel)."""

    def __init__(
        self,
        *,
        outputs: content.OutputStore,
        output_budget: int,
        image_max_px: int,
        approval_policy: str = "ask",
        main_thread_timeout: float = 60.0,
        main_thread_runner: MainThreadRunner | None = None,
        tool_timeout: float | None = None,
        tools: WorkerPool | None = None,
        reads: WorkerPool | None = None,
        approval_timeout: float = 120.0,
        background_tools: Iterable[str] = (),
        result_meta: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``tools`` runs user tools, ``reads`` the built-in ones (separate pools: reads never queue behind user
        code); ``tool_timeout`` applies to every call whose tool sets none; ``background_tools``: built-in tools
        whose ``background=True`` makes them a task; ``result_meta``: ``_meta`` put on every result of the
        built-in tool of that name (``view_object``'s ``ui``)."""
        self.outputs = outputs
        self.output_budget = output_budget
        self.image_max_px = image_max_px
        self.approval_policy = approval_policy
        self.approver: Approver | None = None
        self.main_thread_timeout = main_thread_timeout
        self.main_thread_runner = main_thread_runner
        self.tool_timeout = tool_timeout
        self.tools = tools or WorkerPool(max_running=40)
        self.reads = reads or WorkerPool(max_running=16, what="built-in reads", setting="nbmcp's read pool")
        self.approval_listeners: list[ApprovalListener] = []
        self.approval_timeout = approval_timeout  # seconds to ask the client's user (the panel may change it)
        self.background_tools = frozenset(background_tools)
        self.result_meta = dict(result_meta or {})
        self.background = BackgroundExecutes(self)  # runs of background-capable tools as tasks

    def shim(self, spec: ToolSpec) -> Callable[..., Awaitable[CallToolResult]]:
        """An async function with the user's parameters (and their docs) that runs the pipeline for ``spec``."""
        hints = typing.get_type_hints(spec.fn, include_extras=True)
        signature = inspect.signature(spec.fn)
        params = []
        unset: set[str] = set()  # with an input_schema: parameters the client may leave out (not the SDK's call)
        for param in signature.parameters.values():
            annotation = hints.get(param.name, Any if param.annotation is param.empty else param.annotation)
            if spec.input_schema is not None and not _is_context(annotation):
                annotation = Any  # the input_schema validates; the SDK's model passes the JSON through
                if param.default is param.empty:
                    param = param.replace(default=None)
                    unset.add(param.name)
            description = spec.param_descriptions.get(param.name)
            if description and not _is_context(annotation):
                annotation = Annotated[annotation, Field(description=description)]
            if _is_context(annotation):  # nbmcp.ToolContext too: the SDK must see a Context to inject one
                annotation = Context
            params.append(param.replace(annotation=annotation))
        context_param = next((p.name for p in params if _is_context(p.annotation)), None)
        if context_param is None:
            hidden = inspect.Parameter(HIDDEN_CONTEXT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context)
            at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
            params.insert(at, hidden)

        async def shim(**kwargs: Any) -> CallToolResult | InputRequiredResult:
            if unset:
                kwargs = {k: v for k, v in kwargs.items() if not (v is None and k in unset)}
            return await self.run(spec, kwargs, context_param)

        # The SDK reads the schema from the signature; a plain function has no typed __signature__ slot.
        # A return annotation the SDK can model gives the tool its outputSchema (see .structured).
        cast(Any, shim).__signature__ = signature.replace(
            parameters=params, return_annotation=structured.return_annotation(spec)
        )
        shim.__annotations__ = {p.name: p.annotation for p in params}
        shim.__name__ = spec.name
        shim.__doc__ = spec.description
        return shim

    async def run(
        self, spec: ToolSpec, kwargs: dict[str, Any], context_param: str | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call ``spec``'s function with ``kwargs``; every outcome is a result, a denial marked as such.

        In the stateless era a call that must ask the client first ends with an ``InputRequiredResult``.
        """
        sdk_context = kwargs.pop(HIDDEN_CONTEXT, None) if context_param is None else kwargs.get(context_param)
        # the SDK context whose log calls go through the call's log (.logs), wrapped for elicitation/sampling
        tool_context = ToolContext(logs.notebook_context(sdk_context)) if isinstance(sdk_context, Context) else None
        if context_param is not None and tool_context is not None:
            kwargs[context_param] = tool_context
        if kwargs.get("background") is True and spec.builtin and spec.name in self.background_tools:
            return await self.background.start(spec, kwargs, tool_context)
        try:
            structured.validate_arguments(spec, {k: v for k, v in kwargs.items() if k != context_param})
            if spec.requires_approval:
                # The owner sees what the client asked for: not the context, nor a default `background=False`.
                arguments = {
                    k: v for k, v in kwargs.items() if k != context_param and not (k == "background" and v is False)
                }
                await self.approve(spec.name, arguments, tool_context)
            value, printed, displays = await self._invoke(spec, kwargs)
        except InputPending as pending:
            return pending.result
        except structured.InvalidArguments as exc:
            return _error_result(str(exc))
        except ApprovalDenied as exc:
            return mark_outcome(_error_result(str(exc)), "denied")
        except ToolTimeout as exc:
            limit = "its timeout=" if spec.timeout else "c.NbMCP.tool_timeout"
            return _error_result(
                f"tool {spec.name!r} did not finish within {exc.seconds:g} s ({limit}) and was abandoned; "
                "try smaller arguments, or ask the notebook's owner for a longer limit"
            )
        except ToolBusy as exc:
            return _error_result(str(exc))
        except Exception as exc:
            return content.apply_budget(content.exception_converted(exc), self.output_budget, self.outputs).to_result()
        converted = content.convert(value, image_max_px=self.image_max_px)
        try:
            schema_bound = structured.structured_content(spec, value)
        except structured.InvalidOutput as exc:
            return _error_result(str(exc))
        if schema_bound is not None:  # validated data must reach the client whole: the budget cuts the text
            converted.structured = schema_bound
        shown = [content.convert_mime_bundle(data, meta, image_max_px=self.image_max_px) for data, meta in displays]
        before = ([TextContent(type="text", text=printed.rstrip("\n"))] if printed.strip() else []) + [
            block for item in shown for block in item.content
        ]
        converted.content[:0] = before
        budgeted = content.apply_budget(
            converted,
            self.output_budget,
            self.outputs,
            budget_structured=spec.budget_structured and schema_bound is None,
        )
        result = budgeted.to_result()
        if spec.builtin and spec.name in self.result_meta:
            result.meta = {**(result.meta or {}), **self.result_meta[spec.name]}
        return result

    async def approve(self, tool: str, arguments: dict[str, Any], context: ToolContext | None = None) -> None:
        """Return if the call may go ahead; raise :class:`ApprovalDenied` saying why not. Every decision is
        told to the ``approval_listeners`` (the audit log): who decided, and what."""
        policy, client = self.approval_policy, current_client.get()

        def decided(by: str, approved: bool, reason: str = "") -> None:
            for listener in list(self.approval_listeners):
                with contextlib.suppress(Exception):
                    listener(tool, client, by, approved, reason)

        if policy == "all":
            return decided("policy", True, "approval policy: all")
        if policy == "none":
            decided("policy", False, "approval policy: none")
            raise ApprovalDenied(f"the notebook's owner does not allow {tool!r} (approval policy: none)")
        if self.approver is not None:
            # The panel wins while it is open; with policy "client" an unanswerable panel passes to the client.
            try:
                approved = await self.approver(tool, arguments, client)
            except NobodyToAsk as exc:
                if policy != "client":
                    decided("panel", False, str(exc))
                    raise
            except ApprovalDenied as exc:
                decided("panel", False, str(exc))
                raise
            else:
                decided("panel", approved)
                if not approved:
                    raise ApprovalDenied(f"the notebook's owner declined the call to {tool!r}")
                return None
        if policy == "client":
            return await self._approve_through_client(tool, arguments, context, decided)
        decided("panel", False, "no approval panel open")
        raise ApprovalDenied(
            f"{tool!r} needs the notebook owner's approval, but no approval panel is open: "
            "ask them to run `%mcp panel` in the notebook"
        )

    async def _approve_through_client(
        self, tool: str, arguments: dict[str, Any], context: ToolContext | None, decided: Callable[..., None]
    ) -> None:
        """Ask the client's user through elicitation (approval policy ``client`` with no panel open)."""
        if context is None:
            decided("client", False, "no request context")
            raise ApprovalDenied(f"{tool!r} needs approval, but this call cannot ask its client")
        shown = json.dumps(arguments, default=str)
        if len(shown) > 500:
            shown = shown[:500] + "…"
        timeout = float(self.approval_timeout)
        try:
            answer = await asyncio.wait_for(
                context.elicit(
                    f"The notebook's MCP server asks: allow the tool {tool!r} to run with arguments {shown}?",
                    _ApproveCall,
                ),
                timeout,
            )
        except asyncio.TimeoutError:  # as with the panel: no answer in time is a no
            decided("client", False, f"no answer within {timeout:g} s")
            raise ApprovalDenied(
                f"the client's user did not answer within {timeout:g} s, so the call to {tool!r} was declined"
            ) from None
        except ClientUnsupported:
            decided("client", False, "the client cannot ask its user (no elicitation)")
            raise ApprovalDenied(
                f"{tool!r} needs approval and the notebook asks this client's user (`%mcp approve client`), "
                "but the client does not support elicitation: ask the notebook's owner to open `%mcp panel`"
            ) from None
        approved = answer.action == "accept" and bool(answer.data.approve)
        if not context.restored:  # a later stateless round re-reads the decision: audited once, when made
            decided("client", approved, answer.action)
        if not approved:
            raise ApprovalDenied(f"the client's user declined the call to {tool!r} ({answer.action})")

    async def _invoke(self, spec: ToolSpec, kwargs: dict[str, Any]) -> tuple[Any, str, list[Any]]:
        """Run the user's function; returns its value, what it printed and what it displayed."""
        fn = spec.fn
        pool = self.reads if spec.builtin and not spec.main_thread else self.tools
        timeout = spec.timeout or self.tool_timeout
        client = current_client_key.get()
        if inspect.iscoroutinefunction(fn):
            with capture.capture_output() as buffer:
                value = await pool.run_async(spec.name, lambda: fn(**kwargs), timeout=timeout, client=client)
            return value, buffer.getvalue(), []

        def call() -> tuple[Any, str, list[Any]]:
            with capture.capture_output() as buffer, capture.capture_displays() as displays:
                value = fn(**kwargs)
            return value, buffer.getvalue(), displays

        if spec.main_thread and self.main_thread_runner is not None:
            future = self.main_thread_runner(call)
            timeout = spec.timeout or self.main_thread_timeout
            try:
                done, _ = await asyncio.wait([asyncio.wrap_future(future)], timeout=timeout)
            finally:
                if not future.done():
                    future.cancel()  # timed out or the client went away while it was queued: it will not run
            if not done:
                raise ToolTimeout(timeout)
            return future.result()
        return await pool.run_sync(spec.name, call, timeout=timeout, client=client)


class _ApproveCall(BaseModel):
    approve: bool = Field(description="Run this tool call now?")


def _is_context(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, Context | ToolContext)


def _error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
