"""Asking the client from inside a tool: elicitation (its user) and sampling (its model), in both protocol eras.

A tool that takes a parameter annotated ``nbmcp.ToolContext`` (or the SDK's ``Context``) receives a
:class:`ToolContext`. ``await ctx.elicit(message, schema)`` and ``await ctx.sample(messages, max_tokens)`` work
in async tools; sync tools (worker threads, or the kernel's main thread) call ``ctx.elicit_sync`` /
``ctx.sample_sync``, which hop onto the server's event loop and wait there.

How the question travels depends on the negotiated protocol:

- **Handshake era** (up to 2025-11-25): a standalone ``elicitation/create`` / ``sampling/createMessage`` request
  is sent to the client in the middle of the call, and the tool waits for the answer.
- **Stateless era** (2026-07-28): there is no server-to-client request. The call ends with an
  ``InputRequiredResult`` carrying the question; the client asks its user (or model) and calls the tool again
  with the answer. **The tool body runs again from the top on every round**, and each question it asks again
  is answered from the sealed ``request_state`` the SDK round-trips. So code *before* an ``elicit``/``sample``
  runs once per round: keep side effects after the last question (or make them idempotent), and ask the same
  questions in the same order each round (an answer counts only for the question it was given to).

The SDK's own stateless mechanism (``Resolve`` parameters) asks before the body runs; a notebook tool asks where
it likes, so this is the smallest layer over the SDK's public request types that lets the body itself ask. The
``request_state`` is sealed (authenticated and encrypted) by the SDK's request-state boundary, so a client cannot
forge an earlier answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
    render_elicitation_schema,
)
from mcp.server.mcpserver import Context
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel, ValidationError

__all__ = [
    "AcceptedElicitation",
    "CancelledElicitation",
    "ClientUnsupported",
    "DeclinedElicitation",
    "ElicitationResult",
    "InputPending",
    "ToolContext",
]

STATELESS_VERSION = "2026-07-28"
_STATE_VERSION = 1
_KEY_PREFIX = "nbmcp-q"


class ClientUnsupported(RuntimeError):
    """The client did not declare the capability a question needs (elicitation or sampling)."""


class InputPending(Exception):
    """Raised inside a stateless-era tool call that must end with a question; the pipeline returns ``result``."""

    def __init__(self, result: InputRequiredResult) -> None:
        super().__init__("the client must answer a question first")
        self.result = result


def _digest(request: Any) -> str:
    """Pin an answer to the exact question it answered (the body may change between rounds)."""
    params = request.params.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw = hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).digest()[:12]
    return base64.urlsafe_b64encode(raw).decode()


def _is_stateless(version: str | None) -> bool:
    return version is not None and version >= STATELESS_VERSION  # ISO dates compare as strings


class ToolContext:
    """What a tool can do with its client during a call: ask its user, sample its model, report progress.

    Everything else (``report_progress``, ``info``, ``request_id``, ``protocol_version``, ...) is the SDK's
    ``Context``, reached through this object.
    """

    def __init__(self, sdk: Context, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.sdk = sdk
        self._loop = loop or asyncio.get_running_loop()
        self._stateless = _is_stateless(sdk.protocol_version)
        self._asked = 0
        state = _decode(sdk.request_state) if self._stateless else {}
        self._answers: dict[str, dict[str, Any]] = state.get("answers", {})
        self._last_asked: dict[str, str] = state.get("asked", {})
        self._responses = dict(sdk.input_responses or {}) if self._stateless else {}
        self.restored = False
        """True when the last answer came back from an earlier round's state (stateless era), not fresh."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sdk, name)

    @property
    def stateless(self) -> bool:
        """True in the 2026-07-28 era, where the tool body re-runs once per question answered."""
        return self._stateless

    # -- asking the client's user -------------------------------------------------------------

    async def elicit(self, message: str, schema: type[BaseModel] | dict[str, Any]) -> ElicitationResult[Any]:
        """Ask the client's user; returns ``AcceptedElicitation(data=...)``, ``DeclinedElicitation()`` or
        ``CancelledElicitation()`` (check ``.action``).

        ``schema`` is a pydantic model of flat primitive fields (``data`` is then an instance), or a JSON Schema
        dict of the restricted form elicitation allows (``data`` is then the dict the client sent).
        """
        if not isinstance(message, str) or not message:
            raise ValueError("elicit: `message` must be a non-empty string saying what you ask the user")
        if isinstance(schema, dict):
            requested = schema
        elif isinstance(schema, type) and issubclass(schema, BaseModel):
            requested = render_elicitation_schema(schema)
        else:
            raise TypeError(
                f"elicit: `schema` must be a pydantic model class or a JSON Schema dict, not {type(schema).__name__}"
            )
        caps = self.sdk.client_capabilities
        form = caps.elicitation if caps is not None else None
        if form is None or (form.form is None and form.url is not None):
            raise ClientUnsupported(
                "this MCP client does not support elicitation (it declared no form elicitation capability), "
                "so the tool cannot ask its user; pass the value as a tool argument instead"
            )
        request = ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=requested))
        answer = await self._ask(request, ElicitResult)
        result = answer if isinstance(answer, ElicitResult) else ElicitResult.model_validate(answer)
        if result.action == "decline":
            return DeclinedElicitation()
        if result.action == "cancel":
            return CancelledElicitation()
        if result.content is None:
            raise ValueError("the client accepted the question but sent no content")
        if isinstance(schema, dict):
            return AcceptedElicitation[Any].model_construct(data=dict(result.content))
        try:
            return AcceptedElicitation(data=schema.model_validate(result.content))
        except ValidationError as exc:
            raise ValueError(f"the client's answer does not match the schema {schema.__name__}: {exc}") from None

    # -- asking the client's model ------------------------------------------------------------

    async def sample(
        self,
        messages: str | Sequence[str | SamplingMessage | dict[str, Any]],
        max_tokens: int,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        stop_sequences: list[str] | None = None,
    ) -> CreateMessageResult:
        """Ask the client's model; ``messages`` is a string (one user message) or a list of strings (user
        messages), ``SamplingMessage`` objects or ``{"role", "content"}`` dicts. Returns the SDK's
        ``CreateMessageResult`` (``.content.text`` for a text answer)."""
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"sample: `max_tokens` must be a positive integer, not {max_tokens!r}")
        caps = self.sdk.client_capabilities
        if caps is None or caps.sampling is None:
            raise ClientUnsupported(
                "this MCP client does not support sampling (it declared no sampling capability), "
                "so the tool cannot ask its model"
            )
        params = CreateMessageRequestParams(
            messages=_sampling_messages(messages),
            max_tokens=max_tokens,
            system_prompt=system_prompt,
            temperature=temperature,
            stop_sequences=stop_sequences,
        )
        answer = await self._ask(CreateMessageRequest(params=params), CreateMessageResult)
        return answer if isinstance(answer, CreateMessageResult) else CreateMessageResult.model_validate(answer)

    # -- from sync tools ----------------------------------------------------------------------

    def elicit_sync(self, message: str, schema: type[BaseModel] | dict[str, Any]) -> ElicitationResult[Any]:
        """:meth:`elicit` for a sync tool (a worker thread or the kernel's main thread): waits on the server's loop."""
        return self._on_loop(self.elicit(message, schema))

    def sample_sync(self, messages: Any, max_tokens: int, **options: Any) -> CreateMessageResult:
        """:meth:`sample` for a sync tool: waits on the server's loop."""
        return self._on_loop(self.sample(messages, max_tokens, **options))

    def _on_loop(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError("called from the server's event loop: in an async tool, `await ctx.elicit(...)`")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- the two transports ---------------------------------------------------------------------

    async def _ask(self, request: Any, result_type: type[BaseModel]) -> Any:
        if not self._stateless:
            return await self.sdk.session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=self.sdk.request_id)
            )
        key = f"{_KEY_PREFIX}{self._asked}"
        self._asked += 1
        digest = _digest(request)
        recorded = self._answers.get(key)
        self.restored = recorded is not None and recorded.get("q") == digest
        if recorded is not None and self.restored:
            return recorded["answer"]
        answer = self._responses.get(key)
        if answer is not None and self._last_asked.get(key) == digest:
            wire = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
            self._answers[key] = {"q": digest, "answer": wire}
            return result_type.model_validate(wire)
        # Not answered yet: end this round with the question; earlier answers ride along in the sealed state.
        self._answers = {k: v for k, v in self._answers.items() if int(k[len(_KEY_PREFIX) :]) < self._asked - 1}
        state = {"v": _STATE_VERSION, "answers": self._answers, "asked": {key: digest}}
        raise InputPending(
            InputRequiredResult(input_requests={key: request}, request_state=json.dumps(state, separators=(",", ":")))
        )


def _decode(request_state: str | None) -> dict[str, Any]:
    """The earlier rounds' answers (the SDK verified the seal); anything unreadable means no progress yet."""
    if not request_state:
        return {}
    try:
        state = json.loads(request_state)
    except ValueError:
        return {}
    return state if isinstance(state, dict) and state.get("v") == _STATE_VERSION else {}


def _sampling_messages(messages: str | Sequence[str | SamplingMessage | dict[str, Any]]) -> list[SamplingMessage]:
    if isinstance(messages, str):
        messages = [messages]
    out = []
    for i, message in enumerate(messages):
        if isinstance(message, SamplingMessage):
            out.append(message)
        elif isinstance(message, str):
            out.append(SamplingMessage(role="user", content=TextContent(type="text", text=message)))
        elif isinstance(message, dict):
            body = message.get("content")
            if isinstance(body, str):
                message = {**message, "content": {"type": "text", "text": body}}
            try:
                out.append(SamplingMessage.model_validate(message))
            except ValidationError as exc:
                raise ValueError(f"sample: `messages[{i}]` is not a sampling message: {exc}") from None
        else:
            raise TypeError(f"sample: `messages[{i}]` must be a string, a dict or a SamplingMessage")
    if not out:
        raise ValueError("sample: `messages` is empty; give at least one message")
    return out
