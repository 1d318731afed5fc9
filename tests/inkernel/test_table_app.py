"""``view_object`` and its MCP App (``ui://nbmcp/table``), end to end.

A real kernel exposes a frame; the SDK client (both eras) sees the tool's ``_meta.ui``, the markdown fallback and
the ``text/html;profile=mcp-app`` resource. Then Debian's chromium (Playwright) opens a small test host page that
embeds the app in a sandboxed iframe and speaks the app bridge's postMessage protocol (``ui/initialize``,
``ui/notifications/tool-result``, ``tools/call``), forwarding the app's tool calls to the real in-kernel server
through the SDK client: the table shows rows, and Next fetches the next page through a real ``read_rows`` call.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.conftest import KernelHandle, connect
from tests.inkernel.conftest import start_server
from tests.mcp_results import MODES, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

APP_MIME = "text/html;profile=mcp-app"


@pytest.fixture(scope="module")
def server(kernel: KernelHandle) -> dict[str, Any]:
    setup = """
import pandas as pd
n = range(60)
orders = pd.DataFrame({"id": n, "city": [f"city{i % 7}" for i in n], "amount": [i * 1.5 for i in n]})
nbmcp.expose(orders, "orders")
nbmcp.expose({"a": 1}, "settings")
"""
    return start_server(kernel, setup)


@pytest.mark.parametrize("mode", MODES)
async def test_view_object_links_the_app_and_falls_back_to_markdown(server: dict, mode: str) -> None:
    async with connect(server["url"], server["token"], mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("view_object", {"name": "orders", "limit": 5})
        page = (await client.read_resource("ui://nbmcp/table")).contents[0]
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        not_a_frame = await client.call_tool("view_object", {"name": "settings"})
    tool = tools["view_object"]
    assert tool.annotations is not None and tool.annotations.read_only_hint
    assert tool.meta == {"ui": {"resourceUri": "ui://nbmcp/table"}}
    assert not result.is_error, text_of(result)
    assert result.meta is not None and result.meta["ui"] == {"resourceUri": "ui://nbmcp/table"}
    text = text_of(result)
    assert "| id | city | amount |" in text and "Rows 0 to 4 of 60" in text  # the fallback for hosts without Apps
    assert result.structured_content["rows"][4] == {"id": 4, "city": "city4", "amount": 6.0}
    assert [c["name"] for c in result.structured_content["all_columns"]] == ["id", "city", "amount"]
    assert page.mime_type == APP_MIME and listed["ui://nbmcp/table"].mime_type == APP_MIME
    # Self-contained: no network fetches, no CDN.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert "fetch(" not in page.text and "XMLHttpRequest" not in page.text
    assert not_a_frame.is_error and "not a DataFrame" in text_of(not_a_frame)


HOST_PAGE = """<!DOCTYPE html><html><body>
<iframe id="app" sandbox="allow-scripts" style="width:900px;height:600px"></iframe>
<script>
// A minimal MCP Apps host: answers ui/initialize, hands over the tool result, forwards tools/call to Python.
const frame = document.getElementById("app");
window.toolCalls = [];
window.addEventListener("message", async (event) => {
  if (event.source !== frame.contentWindow) return;
  const msg = event.data;
  const reply = (body) => frame.contentWindow.postMessage({jsonrpc: "2.0", id: msg.id, ...body}, "*");
  if (msg.method === "ui/initialize") {
    reply({result: {protocolVersion: msg.params.protocolVersion, hostInfo: {name: "test-host", version: "1"},
                    hostCapabilities: {serverTools: {}}, hostContext: {theme: "light"}}});
  } else if (msg.method === "ui/notifications/initialized") {
    frame.contentWindow.postMessage({jsonrpc: "2.0", method: "ui/notifications/tool-input",
                                     params: {arguments: window.toolInput}}, "*");
    frame.contentWindow.postMessage({jsonrpc: "2.0", method: "ui/notifications/tool-result",
                                     params: window.toolResult}, "*");
  } else if (msg.method === "tools/call") {
    window.toolCalls.push(msg.params);
    try { reply({result: JSON.parse(await window.callTool(JSON.stringify(msg.params)))}); }
    catch (error) { reply({error: {code: -32603, message: String(error)}}); }
  }
});
</script></body></html>"""


@requires_chromium
async def test_the_app_pages_through_read_rows_in_chromium(server: dict) -> None:
    from playwright.async_api import async_playwright, expect

    async with connect(server["url"], server["token"]) as client:
        first = await client.call_tool("view_object", {"name": "orders", "limit": 10})
        html = (await client.read_resource(first.meta["ui"]["resourceUri"])).contents[0].text
        wire = first.model_dump(mode="json", by_alias=True, exclude_none=True)
        forwarded: list[dict[str, Any]] = []

        async def call_tool(params: str) -> str:
            request = json.loads(params)
            forwarded.append(request)
            result = await client.call_tool(request["name"], request.get("arguments") or {})
            return json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
            try:
                page = await browser.new_page()
                await page.route("**/*", lambda route: route.abort())  # no network: the app must not need it
                await page.expose_function("callTool", call_tool)
                await page.set_content(HOST_PAGE)
                await page.evaluate(
                    "([result, html]) => { window.toolInput = {name: 'orders', limit: 10};"
                    " window.toolResult = result; document.getElementById('app').srcdoc = html; }",
                    [wire, html],
                )
                app = page.frame_locator("#app")
                rows = app.locator("#table tbody tr")
                await expect(rows).to_have_count(10)
                await expect(app.locator("#status")).to_have_text("Rows 1\u201310 of 60")
                await expect(rows.first.locator("td").first).to_have_text("0")
                assert forwarded == []  # the first page came with the tool result

                await app.locator("#next").click()  # the next page is a real read_rows call
                await expect(app.locator("#status")).to_have_text("Rows 11\u201320 of 60")
                await expect(rows.first.locator("td").first).to_have_text("10")
                assert forwarded == [{"name": "read_rows", "arguments": {"name": "orders", "offset": 10, "limit": 10}}]

                await app.locator("th[data-column=amount]").click()  # sort the page: descending on a second click
                await app.locator("th[data-column=amount]").click()
                await expect(rows.first.locator("td").nth(2)).to_have_text("28.5")

                await app.locator("#picker summary").click()  # choose columns: read_rows with `columns`
                await app.locator("#columns input[data-column=city]").uncheck()
                await expect(app.locator("#table thead th")).to_have_count(2)
                assert forwarded[-1]["arguments"]["columns"] == ["id", "amount"]
                await expect(app.locator("#prev")).to_be_enabled()
            finally:
                await browser.close()
