"""``completion/complete`` on the in-kernel server, with the SDK client in both eras against a real kernel."""

from __future__ import annotations

import pytest
from mcp.types import PromptReference, ResourceTemplateReference

from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES_PINNED

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SETUP = """
import nbmcp, pandas as pd

sales = pd.DataFrame({"customer": ["ana"], "revenue": [1.0], "region": ["EU"]})
stock = pd.DataFrame({"sku": [1], "shelf": ["A"]})
nbmcp.expose(sales, "sales")
nbmcp.expose(stock, "stock")
nbmcp.expose({"a": 1}, "settings")

regions = ["EU", "US", "APAC"]


@nbmcp.prompt(complete={"region": lambda prefix: [r for r in regions if r.lower().startswith(prefix.lower())]})
def explain(column: str, region: str = "EU", frame: str = "sales") -> str:
    return f"Explain {column} in {region}"


@nbmcp.prompt(complete={"tone": ["formal", "friendly", "funny"]})
def summarise(tone: str) -> str:
    return f"Summarise, {tone}"


@nbmcp.prompt(complete={"anything": lambda prefix: 1 / 0})
def broken(anything: str) -> str:
    return anything


@nbmcp.resource("notes://{topic}", complete={"topic": lambda prefix: ["sales-notes", "stock-notes"]})
def notes(topic: str) -> str:
    return topic
"""


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict:
    return start_server(kernel, SETUP)


def objects_template(template: str) -> ResourceTemplateReference:
    return ResourceTemplateReference(uri=template)


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_object_names_for_every_object_template(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        if mode == "legacy":
            assert client.server_capabilities.completions is not None
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        object_templates = [t for t in templates if t.startswith("nbmcp://objects/")]
        assert len(object_templates) == 3
        for template in object_templates:
            done = await client.complete(objects_template(template), {"name": "name", "value": "s"})
            assert done.completion.values == ["sales", "settings", "stock"], template
        done = await client.complete(objects_template("nbmcp://objects/{name}"), {"name": "name", "value": "st"})
        assert done.completion.values == ["stock"] and done.completion.total == 1
        done = await client.complete(
            objects_template("nbmcp://objects/{name}/rows/{offset}/{limit}"), {"name": "offset", "value": ""}
        )
        assert done.completion.values == []


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_columns_and_user_completers_for_prompts(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        explain = PromptReference(name="explain")
        # column of the frame another argument names
        done = await client.complete(explain, {"name": "column", "value": "re"}, context_arguments={"frame": "sales"})
        assert done.completion.values == ["revenue", "region"]
        done = await client.complete(explain, {"name": "column", "value": "s"}, context_arguments={"frame": "stock"})
        assert done.completion.values == ["sku", "shelf"]
        # no frame named: every exposed frame's columns
        done = await client.complete(explain, {"name": "column", "value": "s"})
        assert done.completion.values == ["sku", "shelf"]
        done = await client.complete(explain, {"name": "frame", "value": "sa"})
        assert done.completion.values == ["sales"]
        done = await client.complete(explain, {"name": "region", "value": "a"})
        assert done.completion.values == ["APAC"]
        done = await client.complete(PromptReference(name="summarise"), {"name": "tone", "value": "F"})
        assert done.completion.values == ["formal", "friendly", "funny"]
        done = await client.complete(ResourceTemplateReference(uri="notes://{topic}"), {"name": "topic", "value": ""})
        assert done.completion.values == ["sales-notes", "stock-notes"]


@pytest.mark.parametrize("mode", MODES_PINNED)
async def test_unknown_references_and_failing_completers_are_empty(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        for ref, argument in [
            (PromptReference(name="no_such_prompt"), {"name": "x", "value": ""}),
            (ResourceTemplateReference(uri="nope://{x}"), {"name": "x", "value": ""}),
            (PromptReference(name="broken"), {"name": "anything", "value": "a"}),
            (PromptReference(name="summarise"), {"name": "not_an_argument", "value": ""}),
        ]:
            done = await client.complete(ref, argument)
            assert done.completion.values == [], ref
        # the server carries on
        done = await client.complete(PromptReference(name="summarise"), {"name": "tone", "value": "fu"})
        assert done.completion.values == ["funny"]


def test_declaring_a_completer_for_an_unknown_argument_names_it(server: dict, kernel: KernelHandle) -> None:
    out = kernel.run('@nbmcp.prompt(complete={"colour": ["red"]})\ndef paint(color: str) -> str:\n    return color')
    assert out.error is not None and "'colour'" in out.error and "color" in out.error
    out = kernel.run('@nbmcp.prompt(complete={"color": 3})\ndef paint(color: str) -> str:\n    return color')
    assert out.error is not None and "complete['color']" in out.error
