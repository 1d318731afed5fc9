"""``nbmcp demo``: a first run end to end, with real parts.

Starts a Jupyter kernel, loads the extension in it, publishes a tool and a table, connects the official
MCP client over HTTP with the token, and prints what an assistant sees. Nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
import time
from typing import Any

CELLS = [
    "%load_ext nbmcp",
    textwrap.dedent(
        '''
        import nbmcp, pyarrow as pa

        sales = pa.table({
            "city": ["Oslo", "Lima", "Pune", "Oslo", "Lima", "Kyiv"],
            "amount": [120.0, 80.5, 42.0, 310.25, 19.9, 77.0],
        })
        nbmcp.expose(sales, "sales", description="six orders, one row per order")

        @nbmcp.tool
        def revenue_by_city(top: int = 3) -> dict:
            """Total revenue per city, highest first.

            Args:
                top: how many cities to return.
            """
            totals = {}
            for city, amount in zip(sales["city"].to_pylist(), sales["amount"].to_pylist()):
                totals[city] = totals.get(city, 0) + amount
            return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:top])
        '''
    ).strip(),
]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _run_cell(client: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            raise RuntimeError(f"{content['ename']}: {content['evalue']}")

    client.execute_interactive(code, output_hook=hook, timeout=60)
    return "".join(out)


async def _assistant(url: str, token: str, kernel_client: Any) -> None:
    import anyio
    from mcp.types import TextContent

    from .client import connect
    from .content.summary import summary_line

    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    async with connect(url, token, mode="legacy", message_handler=on_message) as client:
        _say(f"\nAn MCP client connected to {url} (streamable HTTP, bearer token).")
        tools = (await client.list_tools()).tools
        _say("The assistant sees these tools:")
        for tool in tools:
            summary = summary_line(tool.description, 90)
            _say(f"  - {tool.name}({', '.join(tool.input_schema.get('properties', {}))}): {summary}")

        result = await client.call_tool("revenue_by_city", {"top": 2})
        _say("\ncall revenue_by_city(top=2) ->")
        _say(textwrap.indent(json.dumps(result.structured_content, indent=2), "  "))

        page = await client.call_tool("read_rows", {"name": "sales", "offset": 0, "limit": 4})
        _say("\ncall read_rows(name='sales', limit=4) ->")
        _say(textwrap.indent(next(c.text for c in page.content if isinstance(c, TextContent)), "  "))

        # Clients that read resources get the same data as a resource: listed, then read a page at a time.
        listed = [r.uri for r in (await client.list_resources()).resources]
        _say(f"\nThe assistant sees these resources: {', '.join(listed)}")
        uri = "nbmcp://objects/sales/rows/0/3"
        contents = (await client.read_resource(uri)).contents
        _say(f"read {uri} -> {' + '.join(str(c.mime_type) for c in contents)}:")
        page_data = json.loads(next(c.text for c in contents if c.mime_type == "application/json"))
        _say(
            f"  rows {page_data['offset']:,} to {page_data['offset'] + len(page_data['rows']) - 1:,}"
            f" of {page_data['total_rows']:,}, columns {page_data['columns']}:"
        )
        for row in page_data["rows"]:
            _say(f"    {json.dumps(row)}")

        bad = await client.call_tool("revenue_by_city", {"top": "many"})
        _say("\ncall revenue_by_city(top='many') -> a tool error naming the argument:")
        lines = next(c.text for c in bad.content if isinstance(c, TextContent)).splitlines()
        _say(f"  {lines[1]}: {lines[2].strip()}")

        _say("\nThe notebook redefines the tool in a new cell...")
        _run_cell(
            kernel_client,
            "@nbmcp.tool\ndef revenue_by_city(top: int = 3, city_prefix: str = '') -> str:\n    return 'redefined'",
        )
        with anyio.fail_after(10):
            await changed.wait()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        params = list(tools["revenue_by_city"].input_schema["properties"])
        _say(f"  the client was told (tools/list_changed); the tool's parameters are now {params}")


def main(argv: list[str] | None = None) -> int:
    import anyio
    from jupyter_client import KernelManager

    started = time.perf_counter()
    _say("nbmcp demo: starting a Jupyter kernel...")
    km = KernelManager(kernel_name="python3")
    with contextlib.suppress(Exception):  # CurveZMQ keys where libzmq supports them: no plain-TCP warning
        km.transport_encryption = "auto"
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        for number, cell in enumerate(CELLS, 1):
            _say(f"\nIn [{number}]: " + textwrap.indent(cell, " " * 9).lstrip())
            output = _run_cell(kc, cell)
            if output:
                _say(textwrap.indent(output.rstrip(), "        "))
        info = json.loads(
            _run_cell(kc, "import json; print(json.dumps({'url': nbmcp.info().url, 'token': nbmcp.info().token}))")
        )
        anyio.run(_assistant, info["url"], info["token"], kc)
    except Exception as exc:
        _say(f"\nnbmcp demo failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    _say(f"\nDone in {time.perf_counter() - started:.1f} s; the kernel is shut down and its server with it.")
    _say("Next: `%load_ext nbmcp` in your own notebook, then `%mcp config claude` (or vscode, cursor).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
