"""Elicitation and sampling from notebook tools, and approvals through the client, in both protocol eras.

A real kernel runs ``%load_ext nbmcp``; the SDK client connects over HTTP with elicitation and sampling callbacks,
once with the initialize handshake (``legacy``: a standalone server-to-client request mid-call) and once in the
stateless 2026-07-28 era (``auto``: an ``InputRequiredResult`` round, the tool body re-run with the answer).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest
from mcp.types import CreateMessageResult, ElicitResult, TextContent

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of
from tests.node import NODE, NODE_DIR, requires_ts_sdk

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    setup = """
import pydantic
rounds, runs = [], []

class Person(pydantic.BaseModel):
    name: str
    age: int

@nbmcp.tool
async def greet(ctx: nbmcp.ToolContext) -> str:
    '''Ask the user who they are.'''
    rounds.append("greet")
    answer = await ctx.elicit("Who are you?", Person)
    if answer.action != "accept":
        return f"no answer ({answer.action})"
    return f"hello {answer.data.name}, {answer.data.age}"

@nbmcp.tool
def greet_sync(ctx: nbmcp.ToolContext) -> str:
    '''The same from a sync tool (a worker thread), with a JSON Schema dict.'''
    answer = ctx.elicit_sync("Your name?", {"type": "object", "properties": {"name": {"type": "string"}}})
    return f"sync hello {answer.data['name']}" if answer.action == "accept" else f"sync {answer.action}"

@nbmcp.tool
async def two_questions(ctx: nbmcp.ToolContext) -> str:
    '''Two questions in a row, then a model's summary.'''
    first = await ctx.elicit("First?", {"type": "object", "properties": {"x": {"type": "string"}}})
    second = await ctx.elicit("Second?", {"type": "object", "properties": {"x": {"type": "string"}}})
    summary = await ctx.sample([f"summarise {first.data['x']} and {second.data['x']}"], max_tokens=50)
    runs.append("two_questions")  # after the last question: runs once in either era
    return f"{first.data['x']}+{second.data['x']}: {summary.content.text}"

@nbmcp.tool
def summarise_sync(text: str, ctx: nbmcp.ToolContext) -> str:
    '''Sampling from a sync tool.'''
    return ctx.sample_sync(f"summarise: {text}", max_tokens=20, system_prompt="be brief").content.text

@nbmcp.tool(requires_approval=True)
def drop_table(name: str) -> str:
    '''Needs approval.'''
    runs.append(name)
    return f"dropped {name}"

@nbmcp.tool(requires_approval=True)
async def drop_asking(ctx: nbmcp.ToolContext) -> str:
    '''Needs approval, then asks which table.'''
    answer = await ctx.elicit("Which table?", {"type": "object", "properties": {"name": {"type": "string"}}})
    runs.append(answer.data["name"])
    return f"dropped {answer.data['name']}"
"""
    return start_server(kernel, setup)


class FakeUser:
    """The client side: answers elicitations from a script and samples with a canned model; records what it saw."""

    def __init__(self, *answers: ElicitResult) -> None:
        self.answers = list(answers)
        self.asked: list[Any] = []
        self.sampled: list[Any] = []

    async def elicit(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params)
        return self.answers.pop(0)

    async def sample(self, context: Any, params: Any) -> CreateMessageResult:
        self.sampled.append(params)
        prompt = params.messages[-1].content.text
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=f"model says {prompt!r}"), model="fake"
        )

    def client(self, server: dict[str, Any], mode: str) -> Any:
        return connect(
            server["url"], server["token"], mode=mode, elicitation_callback=self.elicit, sampling_callback=self.sample
        )


async def test_the_context_is_not_an_argument(server: dict) -> None:
    async with connect(server["url"], server["token"]) as client:
        schemas = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    assert schemas["greet"].get("properties", {}) == {}  # ctx: nbmcp.ToolContext is injected, not asked for
    assert set(schemas["summarise_sync"]["properties"]) == {"text"}
    assert set(schemas["drop_table"]["properties"]) == {"name"}  # nor is the pipeline's own hidden context


@pytest.mark.parametrize("mode", MODES)
async def test_elicit_accept_reaches_the_tool(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run("rounds.clear()").raise_for_error()
    user = FakeUser(ElicitResult(action="accept", content={"name": "ana", "age": 41}))
    async with user.client(server, mode) as client:
        result = await client.call_tool("greet", {})
    assert not result.is_error, text_of(result)
    assert text_of(result) == "hello ana, 41"
    (asked,) = user.asked
    assert asked.message == "Who are you?"
    assert set(asked.requested_schema["properties"]) == {"name", "age"}
    # The documented difference: in the stateless era the body runs again with the answer.
    assert kernel.value("rounds") == (["greet"] if mode == "legacy" else ["greet", "greet"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_declined_or_cancelled_is_the_tools_answer(server: dict, mode: str, action: str) -> None:
    user = FakeUser(ElicitResult(action=action))
    async with user.client(server, mode) as client:
        result = await client.call_tool("greet", {})
        sync = await FakeUser(ElicitResult(action=action)).client(server, mode).__aenter__()
        try:
            sync_result = await sync.call_tool("greet_sync", {})
        finally:
            await sync.__aexit__(None, None, None)
    assert not result.is_error and text_of(result) == f"no answer ({action})"
    assert not sync_result.is_error and text_of(sync_result) == f"sync {action}"


@pytest.mark.parametrize("mode", MODES)
async def test_sync_tool_elicits_through_the_servers_loop(server: dict, mode: str) -> None:
    user = FakeUser(ElicitResult(action="accept", content={"name": "bo"}))
    async with user.client(server, mode) as client:
        result = await client.call_tool("greet_sync", {})
    assert text_of(result) == "sync hello bo", text_of(result)


@pytest.mark.parametrize("mode", MODES)
async def test_two_questions_and_a_sample(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run("runs.clear()").raise_for_error()
    user = FakeUser(
        ElicitResult(action="accept", content={"x": "one"}), ElicitResult(action="accept", content={"x": "two"})
    )
    async with user.client(server, mode) as client:
        result = await client.call_tool("two_questions", {})
    assert text_of(result) == "one+two: model says 'summarise one and two'", text_of(result)
    assert [a.message for a in user.asked] == ["First?", "Second?"]  # each asked once, in both eras
    assert len(user.sampled) == 1 and user.sampled[0].max_tokens == 50
    assert kernel.value("runs") == ["two_questions"]


@pytest.mark.parametrize("mode", MODES)
async def test_sample_from_a_sync_tool(server: dict, mode: str) -> None:
    user = FakeUser()
    async with user.client(server, mode) as client:
        result = await client.call_tool("summarise_sync", {"text": "abc"})
    assert text_of(result) == "model says 'summarise: abc'"
    assert user.sampled[0].system_prompt == "be brief"


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_capability_gets_a_clear_error(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        elicit = await client.call_tool("greet", {})
        sample = await client.call_tool("summarise_sync", {"text": "x"})
    assert elicit.is_error and "does not support elicitation" in text_of(elicit), text_of(elicit)
    assert sample.is_error and "does not support sampling" in text_of(sample), text_of(sample)


def audit_lines(kernel: KernelHandle, name: str) -> list[dict[str, Any]]:
    kernel.run("_srv = nbmcp.inkernel.lifecycle.current_server(); _srv.audit.flush()").raise_for_error()
    lines = kernel.value("nbmcp.inkernel.oversight.audit.read_lines(_srv.audit.path)")
    return [line for line in lines if line["kind"] == "approval" and line["name"] == name]


@pytest.mark.parametrize("mode", MODES)
async def test_approve_client_asks_the_clients_user(server: dict, kernel: KernelHandle, mode: str) -> None:
    kernel.run(
        "import nbmcp.inkernel.oversight.panel, nbmcp.inkernel.oversight.audit, nbmcp.inkernel.lifecycle\n"
        "while nbmcp.inkernel.oversight.panel.current_panel() is not None:\n    "
        "nbmcp.inkernel.oversight.panel.current_panel().close()\n"
        "runs.clear()"
    ).raise_for_error()
    kernel.run("%mcp approve client").raise_for_error()
    try:
        yes = FakeUser(ElicitResult(action="accept", content={"approve": True}))
        no = FakeUser(ElicitResult(action="accept", content={"approve": False}))
        declined = FakeUser(ElicitResult(action="decline"))
        async with yes.client(server, mode) as client:
            approved = await client.call_tool("drop_table", {"name": f"t_{mode}"})
        async with no.client(server, mode) as client:
            refused = await client.call_tool("drop_table", {"name": "never"})
        async with declined.client(server, mode) as client:
            refused2 = await client.call_tool("drop_table", {"name": "never"})
        async with connect(server["url"], server["token"], mode=mode) as client:  # no elicitation support
            unsupported = await client.call_tool("drop_table", {"name": "never"})
    finally:
        kernel.run("%mcp approve ask").raise_for_error()
    assert text_of(approved) == f"dropped t_{mode}", text_of(approved)
    assert "drop_table" in yes.asked[0].message and f"t_{mode}" in yes.asked[0].message
    assert refused.is_error and "declined" in text_of(refused)
    assert refused2.is_error and "(decline)" in text_of(refused2)
    assert unsupported.is_error and "does not support elicitation" in text_of(unsupported)
    assert kernel.value("runs") == [f"t_{mode}"]
    decisions = [(d["decided_by"], d["outcome"]) for d in audit_lines(kernel, "drop_table")[-4:]]
    assert decisions == [("client", "approved"), ("client", "denied"), ("client", "denied"), ("client", "denied")]


@pytest.mark.parametrize("mode", MODES)
async def test_an_approval_then_a_question_is_audited_once(server: dict, kernel: KernelHandle, mode: str) -> None:
    """In the stateless era the approval is re-read from the sealed state on the question's round: not re-audited."""
    kernel.run("runs.clear()").raise_for_error()
    kernel.run("%mcp approve client").raise_for_error()
    before = len(audit_lines(kernel, "drop_asking"))
    try:
        approve, which = ElicitResult(action="accept", content={"approve": True}), {"name": "t"}
        user = FakeUser(approve, ElicitResult(action="accept", content=which))
        async with user.client(server, mode) as client:
            result = await client.call_tool("drop_asking", {})
    finally:
        kernel.run("%mcp approve ask").raise_for_error()
    assert text_of(result) == "dropped t", text_of(result)
    assert len(user.asked) == 2 and kernel.value("runs") == ["t"]
    decisions = audit_lines(kernel, "drop_asking")[before:]
    assert [(d["decided_by"], d["outcome"]) for d in decisions] == [("client", "approved")]


async def test_a_client_approval_not_answered_in_time_is_a_no(server: dict, kernel: KernelHandle) -> None:
    import time

    import anyio

    async def slow_user(context: Any, params: Any) -> ElicitResult:
        await anyio.sleep(10)  # a person who walked away
        return ElicitResult(action="accept", content={"approve": True})

    server_of = "(__import__('nbmcp.inkernel.lifecycle').inkernel.lifecycle.current_server().mcp_server)"
    kernel.run(f"runs.clear(); {server_of}.approval_timeout = 1").raise_for_error()
    kernel.run("%mcp approve client").raise_for_error()
    try:
        async with connect(server["url"], server["token"], mode="legacy", elicitation_callback=slow_user) as client:
            started = time.perf_counter()
            result = await client.call_tool("drop_table", {"name": "late"})
            elapsed = time.perf_counter() - started
    finally:
        kernel.run("%mcp approve ask").raise_for_error()
        kernel.run(f"{server_of}.approval_timeout = 120").raise_for_error()
    assert result.is_error and "did not answer within 1 s" in text_of(result), text_of(result)
    assert elapsed < 8 and kernel.value("runs") == []
    assert [(d["decided_by"], d["outcome"]) for d in audit_lines(kernel, "drop_table")[-1:]] == [("client", "denied")]


async def test_an_open_panel_wins_over_the_client(server: dict, kernel: KernelHandle) -> None:
    import anyio
    import anyio.to_thread

    kernel.run("runs.clear(); _panel = nbmcp.panel()").raise_for_error()
    kernel.run("%mcp approve client").raise_for_error()
    user = FakeUser(ElicitResult(action="accept", content={"approve": False}))
    results: list[Any] = []
    try:
        async with user.client(server, "auto") as client, anyio.create_task_group() as tg:

            async def call() -> None:
                results.append(await client.call_tool("drop_table", {"name": "by_panel"}))

            tg.start_soon(call)
            with anyio.fail_after(15):
                while not await anyio.to_thread.run_sync(
                    kernel.value, "nbmcp.inkernel.oversight.approvals.pending_approvals()"
                ):
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(kernel.run, "_panel.approve()")
    finally:
        kernel.run("_panel.close()").raise_for_error()
        kernel.run("%mcp approve ask").raise_for_error()
    assert text_of(results[0]) == "dropped by_panel"
    assert user.asked == []  # the client's user was never asked
    assert [(d["decided_by"], d["outcome"]) for d in audit_lines(kernel, "drop_table")[-1:]] == [("panel", "approved")]


@requires_ts_sdk
async def test_the_typescript_sdk_client_answers_elicitation_and_sees_the_app(server: dict) -> None:
    """Interop: the TypeScript SDK client (handshake era) answers ctx.elicit and sees view_object's ui metadata."""
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path

    # The script imports the SDK by package name: run it from beside .ci/node's node_modules.
    script = NODE_DIR / "ts_client.mjs"
    shutil.copyfile(Path(__file__).parent.parent / "ts_client.mjs", script)
    env = {**os.environ, "NBMCP_TOKEN": server["token"]}
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [str(NODE), str(script), server["url"]], capture_output=True, text=True, env=env, timeout=60
        )
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["greet"] == "hello ts, 7" and seen["asked"] == ["Who are you?"]
    assert seen["viewMeta"] == {"ui": {"resourceUri": "ui://nbmcp/table"}}
    assert seen["pageMime"] == "text/html;profile=mcp-app" and seen["pageHasBridge"]
