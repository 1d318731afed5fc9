"""`nbmcp bridge` relays what an in-kernel server says while it serves a request — logs, progress, elicitation
and sampling requests — and completions, to a stdio client (the SDK client, both eras) and back."""

from __future__ import annotations

import os
import sys

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import (
    CreateMessageResult,
    ElicitResult,
    PromptReference,
    ResourceTemplateReference,
    TextContent,
)

from tests.conftest import KernelHandle
from tests.mcp_results import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore:The (logging|sampling) capability is deprecated"),
]

SETUP = """
%load_ext nbmcp
import logging, nbmcp, pandas as pd, pydantic, warnings
from nbmcp import Context

warnings.filterwarnings("ignore", "The (logging|sampling) capability is deprecated")
log = logging.getLogger("relay.tool")
log.setLevel(logging.DEBUG)
nbmcp.expose(pd.DataFrame({"city": ["Oslo"], "temp": [3]}), "weather")


@nbmcp.tool
async def steps(ctx: Context) -> str:
    for i in range(3):
        await ctx.report_progress(i + 1, 3, f"step {i + 1}")
    log.debug("fine detail")
    log.warning("careful")
    await ctx.info("from ctx")
    return "stepped"


class Name(pydantic.BaseModel):
    name: str


@nbmcp.tool
async def ask(ctx: Context) -> str:
    answer = await ctx.elicit("Who are you?", Name)
    return f"{answer.action}:{answer.data.name if answer.action == 'accept' else ''}"


@nbmcp.tool
async def think(ctx: Context) -> str:
    from mcp.types import SamplingMessage, TextContent
    result = await ctx.request_context.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text="2+2?"))],
        max_tokens=5, related_request_id=ctx.request_id)
    return f"model said {result.content.text}"


@nbmcp.prompt(complete={"city": ["Oslo", "Ottawa", "Lima"]})
def forecast(city: str) -> str:
    return f"Forecast for {city}"
"""


@pytest.fixture(scope="module")
def kernel_id(kernel: KernelHandle) -> str:
    kernel.run(SETUP).raise_for_error()
    return kernel.kernel_id


def bridge(kernel_id: str, mode: str, **options) -> Client:
    # The whole environment: the SDK passes a stdio server only a few variables, not JUPYTER_RUNTIME_DIR.
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "nbmcp", "bridge", "--kernel-id", kernel_id], env=dict(os.environ)
    )
    return Client(params, mode=mode, **options)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_logs_progress_and_completions_through_the_bridge(kernel_id: str, mode: str) -> None:
    logs: list[tuple[str, str]] = []

    async def on_log(params) -> None:
        logs.append((params.level, params.data))

    options = {"log_level": "warning"} if mode != "legacy" else {}
    async with bridge(kernel_id, mode, logging_callback=on_log, **options) as client:
        if mode == "legacy":
            await client.set_logging_level("warning")
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        result = await client.call_tool("steps", {}, progress_callback=on_progress)
        assert text_of(result) == "stepped"
        assert progress == [(1, "step 1"), (2, "step 2"), (3, "step 3")]
        assert logs == [("warning", "careful")]
        logs.clear()
        if mode == "legacy":
            await client.set_logging_level("debug")
            await client.call_tool("steps", {})
            assert logs == [("debug", "fine detail"), ("warning", "careful"), ("info", "from ctx")]

        done = await client.complete(PromptReference(name="forecast"), {"name": "city", "value": "o"})
        assert done.completion.values == ["Oslo", "Ottawa"]
        done = await client.complete(
            ResourceTemplateReference(uri="nbmcp://objects/{name}"), {"name": "name", "value": "w"}
        )
        assert done.completion.values == ["weather"]


async def test_elicitation_and_sampling_requests_reach_the_stdio_client(kernel_id: str) -> None:
    asked: list[str] = []
    answers = ["accept", "decline"]

    async def on_elicit(context, params) -> ElicitResult:
        asked.append(params.message)
        action = answers.pop(0)
        return ElicitResult(action=action, content={"name": "ana"} if action == "accept" else None)

    async def on_sample(context, params) -> CreateMessageResult:
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="4"), model="test-model")

    async with bridge(kernel_id, "legacy", elicitation_callback=on_elicit, sampling_callback=on_sample) as client:
        assert text_of(await client.call_tool("ask", {})) == "accept:ana"
        assert text_of(await client.call_tool("think", {})) == "model said 4"
        assert text_of(await client.call_tool("ask", {})) == "decline:"  # the tool gets the answer and handles it
    assert asked == ["Who are you?", "2+2?", "Who are you?"]
